/*
 * syscall.c: the Linux x86-64 system call table. Arguments arrive in rdi, rsi, rdx, r10, r8, r9; the result goes
 * to rax (a negative errno on failure). Every number without a case below answers -ENOSYS, is counted, and is
 * reported to the host once (the syscall_unimplemented hypercall; `paravirt run --verbose` names it).
 */
#include "kernel.h"

long sys_openat(int dirfd, u64 upath, int flags, int mode);
long sys_close(int fd);
long sys_close_range(unsigned first, unsigned last, unsigned flags);
long sys_read(int fd, u64 buf, u64 len);
long sys_write(int fd, u64 buf, u64 len);
long sys_pread(int fd, u64 buf, u64 len, i64 off, bool write);
long sys_readv(int fd, u64 uiov, int iovcnt, bool write, i64 off, bool positional);
long sys_lseek(int fd, i64 off, int whence);
long sys_fstat(int fd, u64 ust);
long sys_newfstatat(int dirfd, u64 upath, u64 ust, int flags);
long sys_statx(int dirfd, u64 upath, int flags, unsigned mask, u64 ubuf);
long sys_readlinkat(int dirfd, u64 upath, u64 ubuf, i64 cap);
long sys_faccessat(int dirfd, u64 upath, int mode);
long sys_dup3(int oldfd, int newfd, int flags, bool dup2);
long sys_dup(int fd);
long sys_fcntl(int fd, int cmd, u64 arg);
long sys_ioctl(int fd, u64 cmd, u64 arg);
long sys_fsync(int fd);
long sys_ftruncate(int fd, i64 len);
long sys_getdents64(int fd, u64 buf, u64 len);
long sys_pipe2(u64 ufds, int flags);
long sys_poll(u64 ufds, u64 nfds, u64 deadline);
long futex_wait(u64 uaddr, u32 val, u64 deadline, u32 bitset);
long futex_requeue(u64 uaddr, int wake, int requeue, u64 uaddr2);
long sleep_until(u64 deadline);
void sched_start_thread(struct thread *t);

static const u32 PID = 1;

/* ---- helpers ------------------------------------------------------------------------------------------------------- */

static bool valid_timespec(const struct linux_timespec *ts)
{
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000;
}

static u64 ts_to_ns(const struct linux_timespec *ts)
{
    if ((u64)ts->tv_sec >= 18000000000ull) {
        return UINT64_MAX / 2; /* ~570 years: never */
    }
    return (u64)ts->tv_sec * 1000000000ull + (u64)ts->tv_nsec;
}

static void ns_to_ts(u64 ns, struct linux_timespec *ts)
{
    ts->tv_sec = (i64)(ns / 1000000000ull);
    ts->tv_nsec = (i64)(ns % 1000000000ull);
}

static u64 add_sat(u64 a, u64 b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static u64 process_cpu_ns(void)
{
    u64 total = 0;
    for (struct thread *t = thread_first(); t != NULL; t = t->next_all) {
        total += t->cpu_ns;
    }
    return total + (now_ns() - current->run_started);
}

static long clock_now(int clk, u64 *ns)
{
    switch (clk) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_REALTIME_ALARM:
    case CLOCK_TAI:
        *ns = realtime_ns();
        return 0;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
    case CLOCK_BOOTTIME_ALARM:
        *ns = now_ns();
        return 0;
    case CLOCK_PROCESS_CPUTIME_ID:
        *ns = process_cpu_ns();
        return 0;
    case CLOCK_THREAD_CPUTIME_ID:
        *ns = current->cpu_ns + (now_ns() - current->run_started);
        return 0;
    default:
        return -EINVAL;
    }
}

/* An absolute deadline on clock clk, as a monotonic deadline. */
static u64 to_monotonic_deadline(int clk, u64 abs_ns)
{
    u64 now_clk;
    if (clock_now(clk, &now_clk) < 0) {
        return UINT64_MAX;
    }
    u64 mono = now_ns();
    return abs_ns <= now_clk ? mono : add_sat(mono, abs_ns - now_clk);
}

/* ---- memory ---------------------------------------------------------------------------------------------------------- */

static u32 prot_flags(u64 prot)
{
    u32 f = 0;
    if (prot & PROT_READ) f |= VMA_READ;
    if (prot & PROT_WRITE) f |= VMA_WRITE | VMA_READ;
    if (prot & PROT_EXEC) f |= VMA_EXEC | VMA_READ;
    return f;
}

static long sys_mmap(u64 addr, u64 len, u64 prot, u64 flags, i64 fd, u64 off)
{
    if (prot & ~(u64)(PROT_READ | PROT_WRITE | PROT_EXEC)) {
        return -EINVAL;
    }
    u64 type = flags & 0x0f;
    if (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE) {
        return -EINVAL;
    }
    if (len == 0) {
        return -EINVAL;
    }
    if (!(flags & MAP_ANONYMOUS)) {
        UNUSED(off);
        return fd < 0 ? -EBADF : -ENODEV; /* no file mappings (the files are devices and procfs) */
    }
    u64 out;
    long r = vm_map(addr, len, prot_flags(prot) | ((flags & MAP_STACK) ? VMA_STACK : 0), (flags & MAP_FIXED) != 0,
                    (flags & MAP_FIXED_NOREPLACE) != 0, &out);
    return r < 0 ? r : (long)out;
}

static long sys_madvise(u64 addr, u64 len, int advice)
{
    if (addr & (PAGE_SIZE - 1)) {
        return -EINVAL;
    }
    switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_REMOVE:
        return vm_discard(addr, len);
    default:
        return 0; /* hints (NORMAL, WILLNEED, HUGEPAGE, DONTDUMP, ...) change nothing here */
    }
}

/* ---- threads -------------------------------------------------------------------------------------------------------- */

static long do_clone(struct regs *r, u64 flags, u64 stack, u64 parent_tid, u64 child_tid, u64 tls)
{
    const u64 thread_flags = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND;
    if ((flags & thread_flags) != thread_flags || (flags & CLONE_VFORK)) {
        return -ENOSYS; /* fork/vfork: one process */
    }
    if ((flags & CLONE_SETTLS) && tls >= USER_TOP) {
        return -EPERM;
    }
    struct thread *t = thread_create();
    if (t == NULL) {
        return -ENOMEM;
    }
    *t->regs = *r;
    t->regs->rax = 0;
    if (stack != 0) {
        t->regs->rsp = stack;
    }
    t->fs_base = (flags & CLONE_SETTLS) ? tls : current->fs_base;
    __asm__ volatile("fxsave64 %0" : "=m"(t->fpu));
    t->sigmask = current->sigmask;
    memcpy(t->name, current->name, sizeof(t->name));
    if (flags & CLONE_CHILD_CLEARTID) {
        t->clear_child_tid = child_tid;
    }
    u32 tid = (u32)t->tid;
    if (flags & CLONE_PARENT_SETTID) {
        copy_to_user(parent_tid, &tid, 4);
    }
    if (flags & CLONE_CHILD_SETTID) {
        copy_to_user(child_tid, &tid, 4);
    }
    sched_start_thread(t);
    return t->tid;
}

static long sys_clone3(struct regs *r, u64 uargs, u64 size)
{
    struct linux_clone_args a;
    memset(&a, 0, sizeof(a));
    if (size < 64 || size > 4096) {
        return -EINVAL;
    }
    if (copy_from_user(&a, uargs, MIN(size, (u64)sizeof(a))) < 0) {
        return -EFAULT;
    }
    if (a.exit_signal != 0 || a.set_tid != 0 || a.set_tid_size != 0) {
        return -EINVAL;
    }
    if ((a.stack == 0) != (a.stack_size == 0)) {
        return -EINVAL;
    }
    u64 sp = a.stack ? a.stack + a.stack_size : 0;
    return do_clone(r, a.flags, sp, a.parent_tid, a.child_tid, a.tls);
}

static long sys_futex(u64 uaddr, int op, u32 val, u64 utimeout, u64 uaddr2, u32 val3)
{
    int cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    switch (cmd) {
    case FUTEX_WAIT:
    case FUTEX_WAIT_BITSET: {
        u64 deadline = UINT64_MAX;
        if (utimeout != 0) {
            struct linux_timespec ts;
            if (copy_from_user(&ts, utimeout, sizeof(ts)) < 0) {
                return -EFAULT;
            }
            if (!valid_timespec(&ts)) {
                return -EINVAL;
            }
            if (cmd == FUTEX_WAIT) {
                deadline = add_sat(now_ns(), ts_to_ns(&ts)); /* relative, monotonic */
            } else {
                deadline = to_monotonic_deadline((op & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC,
                                                 ts_to_ns(&ts));
            }
        }
        return futex_wait(uaddr, val, deadline, cmd == FUTEX_WAIT ? FUTEX_BITSET_MATCH_ANY : val3);
    }
    case FUTEX_WAKE:
        return futex_wake(uaddr, (int)MIN(val, 0x7fffffffu), FUTEX_BITSET_MATCH_ANY);
    case FUTEX_WAKE_BITSET:
        return futex_wake(uaddr, (int)MIN(val, 0x7fffffffu), val3);
    case FUTEX_REQUEUE:
    case FUTEX_CMP_REQUEUE: {
        if (cmd == FUTEX_CMP_REQUEUE) {
            u32 cur;
            if (copy_from_user(&cur, uaddr, 4) < 0) {
                return -EFAULT;
            }
            if (cur != val3) {
                return -EAGAIN;
            }
        }
        return futex_requeue(uaddr, (int)MIN(val, 0x7fffffffu), (int)MIN(utimeout, 0x7fffffffull), uaddr2);
    }
    case FUTEX_WAKE_OP: {
        /* *uaddr2 = *uaddr2 OP oparg; wake val on uaddr; if (old CMP cmparg) wake val2 on uaddr2 */
        u32 old;
        if ((uaddr2 & 3) || copy_from_user(&old, uaddr2, 4) < 0) {
            return -EFAULT;
        }
        u32 opc = (val3 >> 28) & 7, cmp = (val3 >> 24) & 15;
        u32 oparg = (val3 >> 12) & 0xfff, cmparg = val3 & 0xfff;
        if (val3 & (8u << 28)) {
            oparg = 1u << (oparg & 31);
        }
        u32 nv = old;
        switch (opc) {
        case 0: nv = oparg; break;
        case 1: nv = old + oparg; break;
        case 2: nv = old | oparg; break;
        case 3: nv = old & ~oparg; break;
        case 4: nv = old ^ oparg; break;
        default: return -ENOSYS;
        }
        if (copy_to_user(uaddr2, &nv, 4) < 0) {
            return -EFAULT;
        }
        long n = futex_wake(uaddr, (int)MIN(val, 0x7fffffffu), FUTEX_BITSET_MATCH_ANY);
        bool c;
        switch (cmp) {
        case 0: c = old == cmparg; break;
        case 1: c = old != cmparg; break;
        case 2: c = (i32)old < (i32)cmparg; break;
        case 3: c = (i32)old <= (i32)cmparg; break;
        case 4: c = (i32)old > (i32)cmparg; break;
        case 5: c = (i32)old >= (i32)cmparg; break;
        default: return -ENOSYS;
        }
        if (c) {
            n += futex_wake(uaddr2, (int)MIN(utimeout, 0x7fffffffull), FUTEX_BITSET_MATCH_ANY);
        }
        return n;
    }
    default:
        return -ENOSYS; /* PI futexes */
    }
}

/* ---- signals -------------------------------------------------------------------------------------------------------- */

#define SIGBIT(s) (1ull << ((s) - 1))

static long sys_rt_sigaction(int sig, u64 uact, u64 uold, u64 sigsetsize)
{
    if (sigsetsize != 8) {
        return -EINVAL;
    }
    if (sig < 1 || sig > LINUX_NSIG) {
        return -EINVAL;
    }
    if (uact && (sig == SIGKILL || sig == SIGSTOP)) {
        return -EINVAL;
    }
    struct k_sigaction old = sigactions[sig - 1];
    if (uact) {
        struct linux_sigaction a;
        if (copy_from_user(&a, uact, sizeof(a)) < 0) {
            return -EFAULT;
        }
        sigactions[sig - 1].handler = a.handler;
        sigactions[sig - 1].flags = a.flags & ~(u64)SA_UNSUPPORTED;
        sigactions[sig - 1].restorer = a.restorer;
        sigactions[sig - 1].mask = a.mask & ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP));
        if (a.handler == SIG_IGN) {
            for (struct thread *t = thread_first(); t != NULL; t = t->next_all) {
                t->sigpending &= ~SIGBIT(sig);
            }
        }
    }
    if (uold) {
        struct linux_sigaction o = { old.handler, old.flags, old.restorer, old.mask };
        if (copy_to_user(uold, &o, sizeof(o)) < 0) {
            return -EFAULT;
        }
    }
    return 0;
}

static long sys_rt_sigprocmask(int how, u64 uset, u64 uold, u64 size)
{
    if (size != 8) {
        return -EINVAL;
    }
    u64 old = current->sigmask;
    if (uset) {
        u64 set;
        if (copy_from_user(&set, uset, 8) < 0) {
            return -EFAULT;
        }
        switch (how) {
        case SIG_BLOCK: current->sigmask |= set; break;
        case SIG_UNBLOCK: current->sigmask &= ~set; break;
        case SIG_SETMASK: current->sigmask = set; break;
        default: return -EINVAL;
        }
        current->sigmask &= ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP));
    }
    if (uold && copy_to_user(uold, &old, 8) < 0) {
        return -EFAULT;
    }
    return 0;
}

static long sys_sigaltstack(u64 uss, u64 uold, u64 rsp)
{
    struct thread *t = current;
    bool on = !(t->altstack.flags & SS_DISABLE) && rsp > t->altstack.sp && rsp - t->altstack.sp <= t->altstack.size;
    if (uold) {
        struct linux_stack_t o = { t->altstack.sp, (int)(on ? SS_ONSTACK : (t->altstack.flags & SS_DISABLE) ? SS_DISABLE : (int)(t->altstack.flags & SS_AUTODISARM)), 0, t->altstack.size };
        if (copy_to_user(uold, &o, sizeof(o)) < 0) {
            return -EFAULT;
        }
    }
    if (uss) {
        struct linux_stack_t s;
        if (copy_from_user(&s, uss, sizeof(s)) < 0) {
            return -EFAULT;
        }
        if (on) {
            return -EPERM;
        }
        u32 mode = (u32)s.ss_flags & ~SS_AUTODISARM;
        if (mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK) {
            return -EINVAL;
        }
        if (mode == SS_DISABLE) {
            t->altstack.sp = 0;
            t->altstack.size = 0;
            t->altstack.flags = SS_DISABLE;
        } else {
            if (s.ss_size < MINSIGSTKSZ) {
                return -ENOMEM;
            }
            if (!user_range_ok(s.ss_sp, s.ss_size)) {
                return -EFAULT;
            }
            t->altstack.sp = s.ss_sp;
            t->altstack.size = s.ss_size;
            t->altstack.flags = (int)((u32)s.ss_flags & SS_AUTODISARM);
        }
    }
    return 0;
}

static long sys_tgkill(int tgid, int tid, int sig)
{
    if (tgid != -1 && tgid != (int)PID) {
        return -ESRCH;
    }
    if (sig < 0 || sig > LINUX_NSIG) {
        return -EINVAL;
    }
    struct thread *t = thread_by_tid(tid);
    if (t == NULL) {
        return -ESRCH;
    }
    if (sig != 0) {
        signal_send_thread(t, sig);
    }
    return 0;
}

static long sys_kill(int pid, int sig)
{
    if (pid != (int)PID && pid != 0 && pid != -1) {
        return -ESRCH;
    }
    if (sig < 0 || sig > LINUX_NSIG) {
        return -EINVAL;
    }
    if (sig != 0) {
        signal_send_process(sig);
    }
    return 0;
}

/* ---- time ---------------------------------------------------------------------------------------------------------- */

static long sys_clock_gettime(int clk, u64 uts)
{
    u64 ns;
    long r = clock_now(clk, &ns);
    if (r < 0) {
        return r;
    }
    struct linux_timespec ts;
    ns_to_ts(ns, &ts);
    return copy_to_user(uts, &ts, sizeof(ts));
}

static long sys_clock_nanosleep(int clk, int flags, u64 ureq, u64 urem)
{
    struct linux_timespec ts;
    if (copy_from_user(&ts, ureq, sizeof(ts)) < 0) {
        return -EFAULT;
    }
    if (!valid_timespec(&ts)) {
        return -EINVAL;
    }
    u64 now_clk;
    if (clk == CLOCK_THREAD_CPUTIME_ID || clock_now(clk, &now_clk) < 0) {
        return -EINVAL;
    }
    u64 deadline = (flags & TIMER_ABSTIME) ? to_monotonic_deadline(clk, ts_to_ns(&ts)) : add_sat(now_ns(), ts_to_ns(&ts));
    long r = sleep_until(deadline);
    if (r == -EINTR && urem != 0 && !(flags & TIMER_ABSTIME)) {
        u64 now = now_ns();
        struct linux_timespec rem;
        ns_to_ts(deadline > now ? deadline - now : 0, &rem);
        copy_to_user(urem, &rem, sizeof(rem));
    }
    return r;
}

/* ---- system information -------------------------------------------------------------------------------------------- */

static long sys_uname(u64 ubuf)
{
    struct linux_utsname u;
    memset(&u, 0, sizeof(u));
    memcpy(u.sysname, "Linux", 6);
    memcpy(u.nodename, "paravirt", 9);
    memcpy(u.release, "6.1.0-paravirt", 15);
    memcpy(u.version, "#1 SMP PREEMPT_DYNAMIC Paravirt Linux personality", 50);
    memcpy(u.machine, "x86_64", 7);
    memcpy(u.domainname, "(none)", 7);
    return copy_to_user(ubuf, &u, sizeof(u));
}

static long sys_sysinfo(u64 ubuf)
{
    struct linux_sysinfo s;
    memset(&s, 0, sizeof(s));
    s.uptime = (i64)(now_ns() / 1000000000ull);
    s.totalram = pmm_total_pages() * PAGE_SIZE;
    s.freeram = pmm_free_pages() * PAGE_SIZE;
    s.procs = (u16)thread_count;
    s.mem_unit = 1;
    return copy_to_user(ubuf, &s, sizeof(s));
}

static struct linux_rlimit rlimits[RLIMIT_NLIMITS];

static void rlimits_init(void)
{
    for (int i = 0; i < RLIMIT_NLIMITS; i++) {
        rlimits[i].cur = rlimits[i].max = RLIM_INFINITY;
    }
    rlimits[RLIMIT_STACK].cur = STACK_SIZE_MAIN;
    rlimits[RLIMIT_NOFILE].cur = rlimits[RLIMIT_NOFILE].max = 1024;
    rlimits[RLIMIT_CORE].cur = 0;
    rlimits[RLIMIT_MEMLOCK].cur = rlimits[RLIMIT_MEMLOCK].max = 8ull << 20;
    rlimits[RLIMIT_NPROC].cur = rlimits[RLIMIT_NPROC].max = 4096;
}

static long sys_prlimit(int pid, unsigned res, u64 unew, u64 uold)
{
    if (pid != 0 && pid != (int)PID) {
        return -ESRCH;
    }
    if (res >= RLIMIT_NLIMITS) {
        return -EINVAL;
    }
    if (rlimits[RLIMIT_STACK].cur == 0) {
        rlimits_init();
    }
    struct linux_rlimit old = rlimits[res];
    if (unew) {
        struct linux_rlimit n;
        if (copy_from_user(&n, unew, sizeof(n)) < 0) {
            return -EFAULT;
        }
        if (n.cur > n.max || n.max > old.max) {
            return n.cur > n.max ? -EINVAL : -EPERM;
        }
        rlimits[res] = n;
    }
    if (uold && copy_to_user(uold, &old, sizeof(old)) < 0) {
        return -EFAULT;
    }
    return 0;
}

static long sys_getrusage(int who, u64 ubuf)
{
    if (who != 0 && who != 1 && who != -1) {
        return -EINVAL;
    }
    struct linux_rusage ru;
    memset(&ru, 0, sizeof(ru));
    u64 ns = who == 1 ? current->cpu_ns : who == -1 ? 0 : process_cpu_ns();
    ru.ru_utime.tv_sec = (i64)(ns / 1000000000ull);
    ru.ru_utime.tv_usec = (i64)(ns % 1000000000ull / 1000);
    return copy_to_user(ubuf, &ru, sizeof(ru));
}

static long sys_getrandom(u64 buf, u64 len, unsigned flags)
{
    if (flags & ~(unsigned)(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE)) {
        return -EINVAL;
    }
    if (len > 0x2000000) {
        len = 0x2000000;
    }
    return random_to_user(buf, len);
}

static long sys_sched_getaffinity(int pid, u64 len, u64 umask)
{
    if (pid != 0 && thread_by_tid(pid) == NULL) {
        return -ESRCH;
    }
    if (len < 8 || (len & 7)) {
        return -EINVAL;
    }
    u64 mask = 1; /* one vCPU */
    if (copy_to_user(umask, &mask, 8) < 0) {
        return -EFAULT;
    }
    return 8;
}

static long sys_prctl(int option, u64 a2)
{
    switch (option) {
    case PR_SET_NAME: {
        char name[16];
        long n = user_strncpy(name, a2, sizeof(name));
        if (n == -EFAULT) {
            return -EFAULT;
        }
        name[15] = 0;
        memcpy(current->name, name, sizeof(name));
        return 0;
    }
    case PR_GET_NAME:
        return copy_to_user(a2, current->name, sizeof(current->name));
    case PR_SET_DUMPABLE:
    case PR_SET_PDEATHSIG:
    case PR_SET_VMA:
        return 0;
    case PR_GET_DUMPABLE:
        return 1;
    default:
        return -EINVAL;
    }
}

static long sys_arch_prctl(int code, u64 addr)
{
    switch (code) {
    case ARCH_SET_FS:
        if (addr >= USER_TOP) {
            return -EPERM;
        }
        current->fs_base = addr;
        wrmsr(MSR_FS_BASE, addr);
        return 0;
    case ARCH_GET_FS:
        return copy_to_user(addr, &current->fs_base, 8);
    case ARCH_SET_GS:
        return -EPERM; /* the library OS does not give threads a GS base */
    case ARCH_GET_GS: {
        u64 zero = 0;
        return copy_to_user(addr, &zero, 8);
    }
    default:
        return -EINVAL;
    }
}

static long sys_membarrier(int cmd, unsigned flags)
{
    if (flags != 0) {
        return -EINVAL;
    }
    /* One vCPU: every barrier is already there; the commands succeed as Linux's do. */
    switch (cmd) {
    case MEMBARRIER_CMD_QUERY:
        return MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED |
               MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
    case MEMBARRIER_CMD_GLOBAL:
    case MEMBARRIER_CMD_GLOBAL_EXPEDITED:
    case MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED:
    case MEMBARRIER_CMD_PRIVATE_EXPEDITED:
    case MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED:
        return 0;
    default:
        return -EINVAL;
    }
}

static long sys_getcwd(u64 ubuf, u64 size)
{
    if (size < 2) {
        return -ERANGE;
    }
    return copy_to_user(ubuf, "/", 2) < 0 ? -EFAULT : 2;
}

static long sys_chdir(u64 upath)
{
    char path[256];
    long n = user_strncpy(path, upath, sizeof(path));
    if (n < 0) {
        return n;
    }
    return (n == 1 && path[0] == '/') ? 0 : -ENOENT;
}

/* ---- user-defined hypercalls ---------------------------------------------------------------------------------------- */

static long hypercall_status_to_errno(long r)
{
    return r; /* PV_STATUS_* are errno-compatible negative values */
}

static long sys_pv_hypercall(u64 code, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5)
{
    if (code < PV_HYPERCALL_RANGE_USER_FIRST || code > PV_HYPERCALL_RANGE_USER_LAST) {
        return -EINVAL;
    }
    return hypercall_status_to_errno(pv_hypercall5(code, a1, a2, a3, a4, a5));
}

static long sys_pv_hypercall_buffer(u64 code, u64 buf, u64 len, u64 a3, u64 a4, u64 a5)
{
    if (code < PV_HYPERCALL_RANGE_USER_FIRST || code > PV_HYPERCALL_RANGE_USER_LAST) {
        return -EINVAL;
    }
    if (len > PV_LINUX_MAX_HYPERCALL_BUFFER) {
        return -E2BIG;
    }
    static u8 *hbuf;
    if (hbuf == NULL) {
        u64 phys = pmm_alloc_contig(PV_LINUX_MAX_HYPERCALL_BUFFER / PAGE_SIZE);
        if (phys == 0) {
            return -ENOMEM;
        }
        hbuf = phys_to_virt(phys);
    }
    if (copy_from_user(hbuf, buf, len) < 0) {
        return -EFAULT;
    }
    (void)a5;
    long r = pv_hypercall5(code, virt_to_phys(hbuf), len, a3, a4, a5);
    if (copy_to_user(buf, hbuf, len) < 0) {
        return -EFAULT;
    }
    return hypercall_status_to_errno(r);
}

/* ---- dispatch --------------------------------------------------------------------------------------------------------- */

static u64 reported[16]; /* numbers 0..1023 reported once */

void syscall_report_unimplemented(u64 nr, u64 rip)
{
    if (nr < 1024) {
        if (reported[nr / 64] & (1ull << (nr % 64))) {
            return;
        }
        reported[nr / 64] |= 1ull << (nr % 64);
    }
    pv_hypercall2(PV_HYPERCALL_SYSCALL_UNIMPLEMENTED, nr, rip);
}

static long dispatch(struct regs *r)
{
    u64 a1 = r->rdi, a2 = r->rsi, a3 = r->rdx, a4 = r->r10, a5 = r->r8, a6 = r->r9;
    u64 nr = r->orig_rax;
    switch (nr) {
    case __NR_read: return sys_read((int)a1, a2, a3);
    case __NR_write: return sys_write((int)a1, a2, a3);
    case __NR_open: return sys_openat(AT_FDCWD, a1, (int)a2, (int)a3);
    case __NR_openat: return sys_openat((int)a1, a2, (int)a3, (int)a4);
    case __NR_creat: return sys_openat(AT_FDCWD, a1, O_CREAT | O_WRONLY | O_TRUNC, (int)a2);
    case __NR_close: return sys_close((int)a1);
    case __NR_close_range: return sys_close_range((unsigned)a1, (unsigned)a2, (unsigned)a3);
    case __NR_stat: return sys_newfstatat(AT_FDCWD, a1, a2, 0);
    case __NR_lstat: return sys_newfstatat(AT_FDCWD, a1, a2, AT_SYMLINK_NOFOLLOW);
    case __NR_fstat: return sys_fstat((int)a1, a2);
    case __NR_newfstatat: return sys_newfstatat((int)a1, a2, a3, (int)a4);
    case __NR_statx: return sys_statx((int)a1, a2, (int)a3, (unsigned)a4, a5);
    case __NR_lseek: return sys_lseek((int)a1, (i64)a2, (int)a3);
    case __NR_pread64: return sys_pread((int)a1, a2, a3, (i64)a4, false);
    case __NR_pwrite64: return sys_pread((int)a1, a2, a3, (i64)a4, true);
    case __NR_readv: return sys_readv((int)a1, a2, (int)a3, false, 0, false);
    case __NR_writev: return sys_readv((int)a1, a2, (int)a3, true, 0, false);
    case __NR_preadv: return sys_readv((int)a1, a2, (int)a3, false, (i64)a4, true);
    case __NR_pwritev: return sys_readv((int)a1, a2, (int)a3, true, (i64)a4, true);
    case __NR_access: return sys_faccessat(AT_FDCWD, a1, (int)a2);
    case __NR_faccessat: return sys_faccessat((int)a1, a2, (int)a3);
    case __NR_faccessat2: return sys_faccessat((int)a1, a2, (int)a3);
    case __NR_readlink: return sys_readlinkat(AT_FDCWD, a1, a2, (i64)a3);
    case __NR_readlinkat: return sys_readlinkat((int)a1, a2, a3, (i64)a4);
    case __NR_dup: return sys_dup((int)a1);
    case __NR_dup2: return sys_dup3((int)a1, (int)a2, 0, true);
    case __NR_dup3: return sys_dup3((int)a1, (int)a2, (int)a3, false);
    case __NR_fcntl: return sys_fcntl((int)a1, (int)a2, a3);
    case __NR_ioctl: return sys_ioctl((int)a1, a2, a3);
    case __NR_fsync:
    case __NR_fdatasync: return sys_fsync((int)a1);
    case __NR_sync: return 0;
    case __NR_ftruncate: return sys_ftruncate((int)a1, (i64)a2);
    case __NR_getdents64: return sys_getdents64((int)a1, a2, a3);
    case __NR_pipe: return sys_pipe2(a1, 0);
    case __NR_pipe2: return sys_pipe2(a1, (int)a2);
    case __NR_flock: return 0;
    case __NR_getcwd: return sys_getcwd(a1, a2);
    case __NR_chdir: return sys_chdir(a1);
    case __NR_umask: { static u64 mask = 022; u64 old = mask; mask = a1 & 0777; return (long)old; }
    case __NR_mkdir:
    case __NR_mkdirat:
    case __NR_rmdir:
    case __NR_unlink:
    case __NR_unlinkat:
    case __NR_rename:
    case __NR_renameat:
    case __NR_renameat2:
    case __NR_symlink:
    case __NR_link:
    case __NR_chmod:
    case __NR_fchmod:
    case __NR_fchmodat:
    case __NR_chown:
    case __NR_fchown:
    case __NR_lchown:
    case __NR_fchownat:
    case __NR_truncate:
        return -EROFS;
    case __NR_poll: {
        u64 deadline = (i64)a3 < 0 ? UINT64_MAX : add_sat(now_ns(), a3 * 1000000ull);
        return sys_poll(a1, a2, deadline);
    }
    case __NR_ppoll: {
        u64 deadline = UINT64_MAX;
        if (a3) {
            struct linux_timespec ts;
            if (copy_from_user(&ts, a3, sizeof(ts)) < 0) return -EFAULT;
            if (!valid_timespec(&ts)) return -EINVAL;
            deadline = add_sat(now_ns(), ts_to_ns(&ts));
        }
        return sys_poll(a1, a2, deadline);
    }

    case __NR_mmap: return sys_mmap(a1, a2, a3, a4, (i64)a5, a6);
    case __NR_munmap: return vm_unmap(a1, a2);
    case __NR_mprotect:
        if (a3 & ~(u64)(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN)) return -EINVAL;
        return vm_protect(a1, a2, prot_flags(a3));
    case __NR_madvise: return sys_madvise(a1, a2, (int)a3);
    case __NR_mremap: {
        u64 out;
        long e = vm_remap(a1, a2, a3, (int)a4, a5, &out);
        return e < 0 ? e : (long)out;
    }
    case __NR_brk: return vm_brk(a1);
    case __NR_msync:
    case __NR_mlock:
    case __NR_munlock:
    case __NR_mlockall:
    case __NR_munlockall:
    case __NR_mlock2:
        return 0;

    case __NR_clone: return do_clone(r, a1, a2, a3, a4, a5);
    case __NR_clone3: return sys_clone3(r, a1, a2);
    case __NR_fork:
    case __NR_vfork:
    case __NR_execve:
    case __NR_execveat:
        syscall_report_unimplemented(nr, r->rip);
        return -ENOSYS;
    case __NR_exit: thread_exit((int)a1);
    case __NR_exit_group: pv_exit((int)(a1 & 0xff));
    case __NR_wait4:
    case __NR_waitid: return -ECHILD;
    case __NR_gettid: return current->tid;
    case __NR_getpid: return PID;
    case __NR_getppid: return 0;
    case __NR_getuid:
    case __NR_geteuid:
    case __NR_getgid:
    case __NR_getegid: return 0;
    case __NR_getresuid:
    case __NR_getresgid: {
        u32 z = 0;
        if (copy_to_user(a1, &z, 4) < 0 || copy_to_user(a2, &z, 4) < 0 || copy_to_user(a3, &z, 4) < 0) return -EFAULT;
        return 0;
    }
    case __NR_getgroups: return 0;
    case __NR_setuid:
    case __NR_setgid:
    case __NR_setreuid:
    case __NR_setregid:
    case __NR_setresuid:
    case __NR_setresgid:
    case __NR_setgroups:
        return 0;
    case __NR_getpgrp:
    case __NR_getpgid:
    case __NR_getsid: return PID;
    case __NR_setpgid: return 0;
    case __NR_setsid: return -EPERM;
    case __NR_set_tid_address: current->clear_child_tid = a1; return current->tid;
    case __NR_set_robust_list:
        if (a2 != 24) return -EINVAL;
        current->robust_list = a1;
        current->robust_len = a2;
        return 0;
    case __NR_get_robust_list: {
        if (a1 != 0 && (int)a1 != current->tid) return -ESRCH;
        u64 len = 24;
        if (copy_to_user(a2, &current->robust_list, 8) < 0 || copy_to_user(a3, &len, 8) < 0) return -EFAULT;
        return 0;
    }
    case __NR_futex: return sys_futex(a1, (int)a2, (u32)a3, a4, a5, (u32)a6);
    case __NR_sched_yield: sched_yield_now(); return 0;
    case __NR_sched_getaffinity: return sys_sched_getaffinity((int)a1, a2, a3);
    case __NR_sched_setaffinity: return 0;
    case __NR_sched_getscheduler: return 0;
    case __NR_sched_setscheduler: return 0;
    case __NR_sched_getparam: { u32 z = 0; return copy_to_user(a2, &z, 4); }
    case __NR_sched_setparam: return 0;
    case __NR_sched_get_priority_max:
    case __NR_sched_get_priority_min: return 0;
    case __NR_getpriority: return 20;
    case __NR_setpriority: return 0;
    case __NR_getcpu: {
        u32 z = 0;
        if (a1 && copy_to_user(a1, &z, 4) < 0) return -EFAULT;
        if (a2 && copy_to_user(a2, &z, 4) < 0) return -EFAULT;
        return 0;
    }
    case __NR_arch_prctl: return sys_arch_prctl((int)a1, a2);
    case __NR_prctl: return sys_prctl((int)a1, a2);
    case __NR_membarrier: return sys_membarrier((int)a1, (unsigned)a2);

    case __NR_rt_sigaction: return sys_rt_sigaction((int)a1, a2, a3, a4);
    case __NR_rt_sigprocmask: return sys_rt_sigprocmask((int)a1, a2, a3, a4);
    case __NR_rt_sigreturn: return sys_rt_sigreturn(r);
    case __NR_sigaltstack: return sys_sigaltstack(a1, a2, r->rsp);
    case __NR_rt_sigpending: {
        u64 p = current->sigpending;
        return copy_to_user(a1, &p, 8);
    }
    case __NR_tgkill: return sys_tgkill((int)a1, (int)a2, (int)a3);
    case __NR_tkill: return sys_tgkill(-1, (int)a1, (int)a2);
    case __NR_kill: return sys_kill((int)a1, (int)a2);
    case __NR_pause: {
        while (block_current(&sigactions, UINT64_MAX) != WAKE_SIGNAL) {
        }
        return -ERESTARTNOHAND;
    }

    case __NR_clock_gettime: return sys_clock_gettime((int)a1, a2);
    case __NR_clock_getres: {
        if (a1 > CLOCK_TAI) return -EINVAL;
        struct linux_timespec ts = { 0, 1 };
        return a2 ? copy_to_user(a2, &ts, sizeof(ts)) : 0;
    }
    case __NR_gettimeofday: {
        if (a1) {
            u64 ns = realtime_ns();
            struct linux_timeval tv = { (i64)(ns / 1000000000ull), (i64)(ns % 1000000000ull / 1000) };
            if (copy_to_user(a1, &tv, sizeof(tv)) < 0) return -EFAULT;
        }
        if (a2) {
            u64 tz = 0;
            if (copy_to_user(a2, &tz, 8) < 0) return -EFAULT;
        }
        return 0;
    }
    case __NR_time: {
        i64 t = (i64)(realtime_ns() / 1000000000ull);
        if (a1 && copy_to_user(a1, &t, 8) < 0) return -EFAULT;
        return t;
    }
    case __NR_nanosleep: return sys_clock_nanosleep(CLOCK_MONOTONIC, 0, a1, a2);
    case __NR_clock_nanosleep: return sys_clock_nanosleep((int)a1, (int)a2, a3, a4);
    case __NR_times: {
        u64 ticks = process_cpu_ns() / 10000000ull;
        struct linux_tms t = { (i64)ticks, 0, 0, 0 };
        if (a1 && copy_to_user(a1, &t, sizeof(t)) < 0) return -EFAULT;
        return (long)(now_ns() / 10000000ull);
    }

    case __NR_uname: return sys_uname(a1);
    case __NR_sysinfo: return sys_sysinfo(a1);
    case __NR_getrlimit: return sys_prlimit(0, (unsigned)a1, 0, a2);
    case __NR_setrlimit: return sys_prlimit(0, (unsigned)a1, a2, 0);
    case __NR_prlimit64: return sys_prlimit((int)a1, (unsigned)a2, a3, a4);
    case __NR_getrusage: return sys_getrusage((int)a1, a2);
    case __NR_getrandom: return sys_getrandom(a1, a2, (unsigned)a3);

    case PV_LINUX_HYPERCALL_SYSCALL: return sys_pv_hypercall(a1, a2, a3, a4, a5, a6);
    case PV_LINUX_HYPERCALL_BUFFER_SYSCALL: return sys_pv_hypercall_buffer(a1, a2, a3, a4, a5, a6);

    default:
        syscall_report_unimplemented(nr, r->rip);
        return -ENOSYS;
    }
}

void syscall_handler(struct regs *r)
{
    current->in_syscall = true;
    if (kstrace) {
        kprintf("[%d] syscall %lu(0x%lx, 0x%lx, 0x%lx, 0x%lx, 0x%lx, 0x%lx) rip 0x%lx\n", current->tid, r->orig_rax, r->rdi,
                r->rsi, r->rdx, r->r10, r->r8, r->r9, r->rip);
    }
    r->rax = (u64)dispatch(r);
    if (kstrace) {
        kprintf("[%d]   = 0x%lx (%ld)\n", current->tid, r->rax, (long)r->rax);
    }
}
