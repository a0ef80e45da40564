/*
 * signal.c: POSIX signals as Linux delivers them on x86-64: handlers get a real rt_sigframe (siginfo, ucontext with
 * the registers, and the FPU state in fxsave format) on the thread's stack or its sigaltstack, and rt_sigreturn
 * restores what the handler left there (so a runtime can redirect the faulting thread, as .NET does to turn a null
 * dereference into a NullReferenceException). Default actions terminate the run with 128 + signo.
 */
#include "kernel.h"

extern struct fxsave_area fpu_initial;

struct k_sigaction sigactions[LINUX_NSIG];

/* per-thread pending information, enough for siginfo */
struct pending_info {
    int code;
    int pid;
    u64 addr;
};

#define SIGBIT(s) (1ull << ((s) - 1))
#define UNBLOCKABLE (SIGBIT(SIGKILL) | SIGBIT(SIGSTOP))

static struct pending_info pending_info_for[LINUX_NSIG]; /* process-wide: one vCPU, one sender at a time */

static bool default_ignored(int sig)
{
    return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

static bool sig_ignored(int sig)
{
    u64 h = sigactions[sig - 1].handler;
    return h == SIG_IGN || (h == SIG_DFL && default_ignored(sig));
}

bool signal_pending(struct thread *t)
{
    return (t->sigpending & ~(t->sigmask & ~UNBLOCKABLE)) != 0;
}

void signal_send_thread(struct thread *t, int sig)
{
    if (sig < 1 || sig > LINUX_NSIG || sig_ignored(sig)) {
        return;
    }
    t->sigpending |= SIGBIT(sig);
    if (pending_info_for[sig - 1].code == 0) {
        pending_info_for[sig - 1].code = SI_TKILL;
        pending_info_for[sig - 1].pid = 1;
    }
    if (t->state == T_BLOCKED && (SIGBIT(sig) & ~(t->sigmask & ~UNBLOCKABLE))) {
        wake_thread(t, WAKE_SIGNAL);
    }
}

void signal_send_process(int sig)
{
    if (sig < 1 || sig > LINUX_NSIG) {
        return;
    }
    struct thread *target = current;
    if (target->sigmask & SIGBIT(sig) & ~UNBLOCKABLE) {
        for (struct thread *t = thread_first(); t != NULL; t = t->next_all) {
            if (t->state != T_DEAD && !(t->sigmask & SIGBIT(sig))) {
                target = t;
                break;
            }
        }
    }
    pending_info_for[sig - 1].code = SI_USER;
    pending_info_for[sig - 1].pid = 1;
    signal_send_thread(target, sig);
}

static const char *sig_name(int sig)
{
    static const char *const names[] = {
        "?", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
        "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
        "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF",
        "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    };
    return sig >= 1 && sig < (int)ARRAY_SIZE(names) ? names[sig] : "a real-time signal";
}

void kill_process_by_signal(int sig, u64 addr, u64 rip, const struct regs *r)
{
    /* The application's registers at the failure go with it (r NULL: none), so the host's crash report, core file
       and debugger show the application's instruction and backtrace rather than this kernel's. */
    static pv_panic_frame frame;
    u64 frame_phys = 0;
    if (r != NULL) {
        memset(&frame, 0, sizeof(frame));
        frame.size = sizeof(frame);
        frame.signal = (uint32_t)sig;
        frame.vector = PV_PANIC_NO_VECTOR;
        frame.error_code = (uint32_t)r->error;
        frame.fault_address = addr;
        frame.rax = r->rax; frame.rbx = r->rbx; frame.rcx = r->rcx; frame.rdx = r->rdx;
        frame.rsi = r->rsi; frame.rdi = r->rdi; frame.rsp = r->rsp; frame.rbp = r->rbp;
        frame.r8 = r->r8; frame.r9 = r->r9; frame.r10 = r->r10; frame.r11 = r->r11;
        frame.r12 = r->r12; frame.r13 = r->r13; frame.r14 = r->r14; frame.r15 = r->r15;
        frame.rip = rip;
        frame.rflags = r->rflags;
        frame_phys = virt_to_phys(&frame);
    }
    /* The host reports it and exits with 128 + signo; an older host without the call gets the status. */
    pv_hypercall4(PV_HYPERCALL_EXIT_SIGNAL, (u64)sig, addr, rip, frame_phys);
    kprintf("paravirt-linux: the application was killed by %s (signal %d) at address 0x%lx, rip 0x%lx\n",
            sig_name(sig), sig, addr, rip);
    pv_exit(128 + sig);
}

static bool on_altstack(struct thread *t, u64 sp)
{
    return !(t->altstack.flags & SS_DISABLE) && sp > t->altstack.sp && sp - t->altstack.sp <= t->altstack.size;
}

/* Builds the rt_sigframe for sig and points r at the handler; false when the frame cannot be written. */
static bool setup_frame(struct regs *r, int sig, const struct k_sigaction *ka, const struct linux_siginfo *info)
{
    struct thread *t = current;
    u64 sp = r->rsp;
    bool use_alt = (ka->flags & SA_ONSTACK) && !(t->altstack.flags & SS_DISABLE) && !on_altstack(t, sp);
    if (use_alt) {
        sp = t->altstack.sp + t->altstack.size;
    } else {
        sp -= 128; /* the red zone */
    }
    sp = ALIGN_DOWN(sp - sizeof(struct fxsave_area), 64);
    u64 fpstate = sp;
    u64 frame_addr = ALIGN_DOWN(sp - sizeof(struct linux_rt_sigframe), 16) - 8;
    if (frame_addr >= USER_TOP) {
        return false;
    }

    static struct linux_rt_sigframe f;
    memset(&f, 0, sizeof(f));
    f.pretcode = ka->restorer;
    f.uc.uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
    f.uc.uc_stack.ss_sp = t->altstack.sp;
    f.uc.uc_stack.ss_size = t->altstack.size;
    f.uc.uc_stack.ss_flags = (t->altstack.flags & SS_DISABLE) ? SS_DISABLE : (on_altstack(t, r->rsp) ? SS_ONSTACK : 0);
    struct linux_sigcontext *sc = &f.uc.uc_mcontext;
    sc->r8 = r->r8; sc->r9 = r->r9; sc->r10 = r->r10; sc->r11 = r->r11;
    sc->r12 = r->r12; sc->r13 = r->r13; sc->r14 = r->r14; sc->r15 = r->r15;
    sc->rdi = r->rdi; sc->rsi = r->rsi; sc->rbp = r->rbp; sc->rbx = r->rbx;
    sc->rdx = r->rdx; sc->rax = r->rax; sc->rcx = r->rcx; sc->rsp = r->rsp;
    sc->rip = r->rip; sc->eflags = r->rflags;
    sc->cs = USER_CS;
    sc->ss = USER_DS;
    sc->oldmask = t->sigmask;
    sc->fpstate = fpstate;
    f.uc.uc_sigmask = t->sigmask;
    f.info = *info;
    if (info->si_signo == SIGSEGV || info->si_signo == SIGBUS || info->si_signo == SIGILL ||
        info->si_signo == SIGFPE || info->si_signo == SIGTRAP) {
        if (!t->in_syscall && r->orig_rax < 32) {
            sc->trapno = r->orig_rax;
            sc->err = r->error;
            if (r->orig_rax == 14) {
                sc->cr2 = info->u.fault.addr;
            }
        }
    }

    static struct fxsave_area fx;
    __asm__ volatile("fxsave64 %0" : "=m"(fx));
    if (copy_to_user(fpstate, &fx, sizeof(fx)) < 0 || copy_to_user(frame_addr, &f, sizeof(f)) < 0) {
        return false;
    }
    if (use_alt && (t->altstack.flags & SS_AUTODISARM)) {
        t->altstack.flags = SS_DISABLE;
        t->altstack.sp = 0;
        t->altstack.size = 0;
    }
    r->rsp = frame_addr;
    r->rip = ka->handler;
    r->rdi = (u64)sig;
    r->rsi = frame_addr + __builtin_offsetof(struct linux_rt_sigframe, info);
    r->rdx = frame_addr + __builtin_offsetof(struct linux_rt_sigframe, uc);
    r->rax = 0;
    r->rflags &= ~((1ull << 8) | (1ull << 10) | (1ull << 16)); /* TF DF RF */
    r->cs = USER_CS;
    r->ss = USER_DS;
    /* the handler starts with a clean FPU, as on Linux */
    __asm__ volatile("fxrstor64 %0" ::"m"(fpu_initial));
    return true;
}

static void handle_restart(struct regs *r, const struct k_sigaction *ka)
{
    if (!current->in_syscall) {
        return;
    }
    switch ((long)r->rax) {
    case -ERESTART_RESTARTBLOCK:
    case -ERESTARTNOHAND:
        r->rax = (u64)-EINTR;
        break;
    case -ERESTARTSYS:
        if (ka == NULL || (ka->flags & SA_RESTART)) {
            r->rax = r->orig_rax;
            r->rip -= 2;
        } else {
            r->rax = (u64)-EINTR;
        }
        break;
    case -ERESTARTNOINTR:
        r->rax = r->orig_rax;
        r->rip -= 2;
        break;
    default:
        break;
    }
    current->in_syscall = false;
}

/* Runs one handler invocation: ka is sig's action (a handler), info its siginfo. */
static void deliver_to_handler(struct regs *r, int sig, const struct linux_siginfo *info)
{
    struct k_sigaction ka = sigactions[sig - 1];
    handle_restart(r, &ka);
    if (!setup_frame(r, sig, &ka, info)) {
        kill_process_by_signal(SIGSEGV, r->rsp, r->rip, r);
    }
    current->sigmask |= ka.mask;
    if (!(ka.flags & SA_NODEFER)) {
        current->sigmask |= SIGBIT(sig);
    }
    current->sigmask &= ~UNBLOCKABLE;
    if (ka.flags & SA_RESETHAND) {
        sigactions[sig - 1].handler = SIG_DFL;
    }
}

void signal_deliver(struct regs *r)
{
    struct thread *t = current;
    u64 ready = t->sigpending & ~(t->sigmask & ~UNBLOCKABLE);
    if (ready == 0) {
        return;
    }
    int sig = __builtin_ctzll(ready) + 1;
    t->sigpending &= ~SIGBIT(sig);
    struct pending_info pi = pending_info_for[sig - 1];
    pending_info_for[sig - 1].code = 0;
    u64 h = sigactions[sig - 1].handler;
    if (sig == SIGKILL || sig == SIGSTOP || h == SIG_DFL) {
        if (sig != SIGKILL && default_ignored(sig)) {
            handle_restart(r, NULL);
            return;
        }
        kill_process_by_signal(sig, 0, r->rip, r);
    }
    if (h == SIG_IGN) {
        handle_restart(r, NULL);
        return;
    }
    struct linux_siginfo info;
    memset(&info, 0, sizeof(info));
    info.si_signo = sig;
    info.si_code = pi.code != 0 ? pi.code : SI_USER;
    info.u.kill.pid = pi.pid;
    deliver_to_handler(r, sig, &info);
}

void signal_force_fault(struct regs *r, int sig, int code, u64 addr)
{
    struct k_sigaction *ka = &sigactions[sig - 1];
    if ((current->sigmask & SIGBIT(sig)) || ka->handler == SIG_DFL || ka->handler == SIG_IGN) {
        kill_process_by_signal(sig, addr, r->rip, r);
    }
    struct linux_siginfo info;
    memset(&info, 0, sizeof(info));
    info.si_signo = sig;
    info.si_code = code;
    info.u.fault.addr = addr;
    deliver_to_handler(r, sig, &info);
}

long sys_rt_sigreturn(struct regs *r)
{
    struct thread *t = current;
    u64 frame_addr = r->rsp - 8;
    static struct linux_rt_sigframe f;
    if (copy_from_user(&f, frame_addr, sizeof(f)) < 0) {
        kill_process_by_signal(SIGSEGV, frame_addr, r->rip, r);
    }
    const struct linux_sigcontext *sc = &f.uc.uc_mcontext;
    if (sc->rip >= USER_TOP) {
        kill_process_by_signal(SIGSEGV, sc->rip, sc->rip, r);
    }
    t->sigmask = f.uc.uc_sigmask & ~UNBLOCKABLE;
    r->r8 = sc->r8; r->r9 = sc->r9; r->r10 = sc->r10; r->r11 = sc->r11;
    r->r12 = sc->r12; r->r13 = sc->r13; r->r14 = sc->r14; r->r15 = sc->r15;
    r->rdi = sc->rdi; r->rsi = sc->rsi; r->rbp = sc->rbp; r->rbx = sc->rbx;
    r->rdx = sc->rdx; r->rax = sc->rax; r->rcx = sc->rcx; r->rsp = sc->rsp;
    r->rip = sc->rip;
    r->rflags = (r->rflags & ~RFLAGS_USER_MASK) | (sc->eflags & RFLAGS_USER_MASK) | RFLAGS_IF;
    r->cs = USER_CS;
    r->ss = USER_DS;
    if (sc->fpstate != 0) {
        static struct fxsave_area fx;
        if (copy_from_user(&fx, sc->fpstate, sizeof(fx)) < 0) {
            kill_process_by_signal(SIGSEGV, sc->fpstate, r->rip, r);
        }
        u32 mxcsr;
        memcpy(&mxcsr, &fx.bytes[24], 4);
        mxcsr &= cpu_mxcsr_mask;
        memcpy(&fx.bytes[24], &mxcsr, 4);
        __asm__ volatile("fxrstor64 %0" ::"m"(fx));
    } else {
        __asm__ volatile("fxrstor64 %0" ::"m"(fpu_initial));
    }
    /* uc_stack restores the alternate stack, as Linux's restore_altstack does (errors ignored) */
    if (!on_altstack(t, r->rsp)) {
        if (f.uc.uc_stack.ss_flags & SS_DISABLE) {
            t->altstack.flags = SS_DISABLE;
            t->altstack.sp = 0;
            t->altstack.size = 0;
        } else if (f.uc.uc_stack.ss_size >= MINSIGSTKSZ && user_range_ok(f.uc.uc_stack.ss_sp, f.uc.uc_stack.ss_size)) {
            t->altstack.sp = f.uc.uc_stack.ss_sp;
            t->altstack.size = f.uc.uc_stack.ss_size;
            t->altstack.flags = f.uc.uc_stack.ss_flags & SS_AUTODISARM;
        }
    }
    t->in_syscall = false;
    return (long)r->rax;
}

/* Called on every return to user mode (entry.S): reschedules, delivers signals, restarts interrupted system
 * calls. Returns 1 when the frame may leave by sysretq. */
int prepare_user_return(struct regs *r)
{
    sched_check_preempt();
    sched_arm_preemption();
    if (signal_pending(current)) {
        signal_deliver(r);
    } else {
        handle_restart(r, NULL);
    }
    current->in_syscall = false;
    bool fast = r->rcx == r->rip && r->r11 == r->rflags && r->cs == USER_CS && r->ss == USER_DS &&
                r->rip < USER_TOP && (r->rflags & ((1ull << 8) | (1ull << 16))) == 0;
    return fast ? 1 : 0;
}
