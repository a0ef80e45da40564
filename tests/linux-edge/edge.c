/*
 * linux-edge: corner cases of the Linux ABI that a library OS must get right, as a static program that prints the
 * same natively and on the Linux personality (tests/Paravirt.Scenarios compares the two runs):
 *   an unknown system call (-ENOSYS), wild pointers (-EFAULT), paths that do not exist (-ENOENT), /proc/self/exe and
 *   /proc/self/maps, mmap/mprotect/mremap/munmap, signals (a SIGSEGV handler that sees the fault address and jumps
 *   out, a handler on a sigaltstack, a blocked signal left pending then delivered), and at the end a null
 *   dereference without a handler: killed by SIGSEGV, exit status 139.
 *
 *   linux-edge refused     fork and execve (-ENOSYS on the Linux personality: one process), then exit 0; only for the
 *                          guest (natively they work)
 *   linux-edge oom         touches anonymous memory until the library OS runs out: killed like by the OOM killer
 *   linux-edge stdin       reads one line from standard input (the console device) and echoes it
 *   linux-edge syscalls N  N getppid system calls in a loop: the round trip in nanoseconds (bench/linux.sh)
 *   linux-edge fuzz SEED N N random system calls with hostile arguments (wild, kernel, non-canonical, unaligned and
 *                          wrapping pointers and lengths, random flags) from a set that cannot end or block the
 *                          program; the library OS must answer every one (tests/Paravirt.Scenarios: guest only)
 *   linux-edge hypercall   user-defined hypercalls through <paravirt/linux.h>: the host of the test registers 0x1000
 *                          (returns 2 * a1 + a2) and 0x1001 (upper-cases the buffer, returns its length)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <paravirt/linux.h>

static int failures;

static const char *errno_name(int e)
{
    switch (e) {
    case ENOSYS: return "ENOSYS";
    case EFAULT: return "EFAULT";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case ENOTDIR: return "ENOTDIR";
    case ENOMEM: return "ENOMEM";
    default: return "other";
    }
}

static void expect_errno(const char *what, long r, int want)
{
    int e = errno;
    if (r == -1 && e == want) {
        printf("%s: -1 %s\n", what, errno_name(want));
    } else {
        printf("%s: UNEXPECTED %ld (errno %d %s), wanted %s\n", what, r, e, errno_name(e), errno_name(want));
        failures++;
    }
}

static void expect(const char *what, int ok)
{
    printf("%s: %s\n", what, ok ? "ok" : "FAILED");
    failures += !ok;
}

static sigjmp_buf jump;
static volatile uintptr_t fault_addr;
static volatile int fault_code;
static volatile int usr1_on_altstack;
static volatile int usr2_count;
static char altstack[64 * 1024];
static volatile int *volatile nowhere = (volatile int *)0x40;

static void on_segv(int sig, siginfo_t *info, void *uc)
{
    (void)sig;
    (void)uc;
    fault_addr = (uintptr_t)info->si_addr;
    fault_code = info->si_code;
    siglongjmp(jump, 1);
}

static void on_usr1(int sig)
{
    int local;
    (void)sig;
    usr1_on_altstack = (char *)&local >= altstack && (char *)&local < altstack + sizeof(altstack);
}

static void on_usr2(int sig)
{
    (void)sig;
    usr2_count++;
}

/* ---- threads and signals between them ---- */

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cv_go;
static volatile int cv_waiting;
static volatile int usr1_seen_by_waiter;
static volatile int sleeper_ready;
static int sleeper_result;
static int sleeper_errno;

static void *count_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        pthread_mutex_lock(&counter_lock);
        counter++;
        pthread_mutex_unlock(&counter_lock);
        if ((i & 1023) == 0) {
            sched_yield();
        }
    }
    return NULL;
}

static void on_usr1_waiter(int sig)
{
    (void)sig;
    usr1_seen_by_waiter = 1;
}

static void *cv_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cv_lock);
    cv_waiting = 1;
    while (!cv_go) {
        pthread_cond_wait(&cv, &cv_lock);
    }
    pthread_mutex_unlock(&cv_lock);
    return NULL;
}

static void on_usr2_sleeper(int sig)
{
    (void)sig;
}

static volatile int spin_stop;
static volatile long spin_laps;

/* Never enters the kernel: on one vCPU only a timer interrupt can take the CPU away from it. */
static void *spinner(void *arg)
{
    (void)arg;
    while (!spin_stop) {
        spin_laps++;
    }
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    struct timespec t = { 30, 0 };
    sleeper_ready = 1;
    sleeper_result = nanosleep(&t, NULL);
    sleeper_errno = errno;
    return NULL;
}

/* Installs handler for sig (with flags), starts body on a new thread and waits until it sets *ready. */
static pthread_t start_signal_target(int sig, void (*handler)(int), int flags, void *(*body)(void *), volatile int *ready)
{
    struct sigaction sa = { 0 };
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, body, NULL);
    while (!*ready) {
        sched_yield();
    }
    return t;
}

static void threads(void)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        pthread_create(&t[i], NULL, count_worker, NULL);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
    }
    expect("8 threads x 20000 increments under a mutex", counter == 160000);

    /* a signal to a thread blocked in pthread_cond_wait runs its handler; the wait goes on until signalled */
    pthread_t w = start_signal_target(SIGUSR1, on_usr1_waiter, SA_RESTART, cv_waiter, &cv_waiting);
    struct timespec pause = { 0, 20 * 1000 * 1000 };
    nanosleep(&pause, NULL); /* let it block in the futex */
    pthread_kill(w, SIGUSR1);
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&cv_lock);
    cv_go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cv_lock);
    pthread_join(w, NULL);
    expect("a signal to a thread in pthread_cond_wait: handled, then the wait ends on the condition", usr1_seen_by_waiter);

    /* a handler without SA_RESTART interrupts a sleeping thread's nanosleep: EINTR */
    pthread_t sl = start_signal_target(SIGUSR2, on_usr2_sleeper, 0, sleeper, &sleeper_ready);
    nanosleep(&pause, NULL);
    pthread_kill(sl, SIGUSR2);
    pthread_join(sl, NULL);
    expect("pthread_kill interrupts a 30 s nanosleep with EINTR", sleeper_result == -1 && sleeper_errno == EINTR);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);

    /* preemption: a thread that spins without system calls must not starve a sleeper whose time has come */
    pthread_t sp;
    pthread_create(&sp, NULL, spinner, NULL);
    struct timespec nap = { 0, 30 * 1000 * 1000 };
    nanosleep(&nap, NULL);
    spin_stop = 1;
    pthread_join(sp, NULL);
    expect("a spinning thread that never enters the kernel is preempted for a sleeper", spin_laps > 0);
}

/* ---- hostile arguments ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static char scratch[64 * 1024] __attribute__((aligned(4096)));
int main(int argc, char **argv);

static uint64_t hostile_value(void)
{
    static const uint64_t fixed[] = {
        0, 1, 2, 3, 7, 0x10, 0xff, 0x1000, 0xffff, 0x7fffffff, 0x80000000ull, 0xffffffffull, 0x100000000ull,
        (uint64_t)-1, (uint64_t)-2, (uint64_t)-4096, 0x7ffffffff000ull, 0x7fffffffffffull, 0x800000000000ull,
        0xffff800000000000ull, 0xffff800000100000ull, 0xffffffff80000000ull, 0xdead0000ull, 0x400000ull,
    };
    switch (rnd() % 8) {
    case 0:
    case 1:
        return fixed[rnd() % (sizeof(fixed) / sizeof(fixed[0]))];
    case 2:
        return (uint64_t)(uintptr_t)scratch + rnd() % sizeof(scratch);            /* inside the scratch buffer */
    case 3:
        return (uint64_t)(uintptr_t)scratch + sizeof(scratch) - rnd() % 64;        /* running off its end */
    case 4:
        return (uint64_t)(uintptr_t)main + rnd() % 4096;                            /* read-only text */
    case 5:
        return rnd() % 4096;                                                         /* small counts, fds, flags */
    case 6:
        return rnd() % 64;
    default:
        return rnd();                                                                /* anything at all */
    }
}

/* Calls that would end, block or rewrite the program itself whatever their arguments; skipped when drawn at random. */
static int untamable(long nr)
{
    switch (nr) {
    case SYS_rt_sigreturn: case SYS_rt_sigaction: case SYS_rt_sigprocmask: case SYS_sigaltstack:
    case SYS_mprotect: case SYS_munmap: case SYS_brk: case SYS_mremap: case SYS_madvise:
    case SYS_clone: case SYS_clone3: case SYS_exit: case SYS_exit_group: case SYS_kill: case SYS_tkill: case SYS_tgkill:
    case SYS_pause: case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_ppoll: case SYS_select: case SYS_pselect6:
    case SYS_arch_prctl: case SYS_set_tid_address: case SYS_wait4: case SYS_waitid: case SYS_dup2:
    case SYS_rt_sigsuspend: case SYS_rt_sigtimedwait:
        return 1;
    default:
        return 0;
    }
}

static int fuzz(uint64_t seed, long n)
{
    if (!pv_linux_on_paravirt()) {
        /* natively these calls would be real: random opens with O_CREAT|O_TRUNC, writes to random descriptors */
        printf("fuzz: refused, it runs only on the Paravirt Linux personality\n");
        return 2;
    }
    static const long calls[] = {
        SYS_read, SYS_write, SYS_openat, SYS_close, SYS_fstat, SYS_newfstatat, SYS_statx, SYS_lseek, SYS_pread64,
        SYS_pwrite64, SYS_readv, SYS_writev, SYS_access, SYS_faccessat, SYS_pipe2, SYS_dup, SYS_dup3, SYS_fcntl,
        SYS_ioctl, SYS_getdents64, SYS_readlinkat, SYS_getcwd, SYS_uname, SYS_sysinfo, SYS_prlimit64, SYS_getrusage,
        SYS_getrandom, SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday, SYS_time, SYS_sched_getaffinity,
        SYS_sched_yield, SYS_getpid, SYS_gettid, SYS_rt_sigpending, SYS_membarrier, SYS_mmap, SYS_set_robust_list,
        SYS_get_robust_list, SYS_futex, SYS_poll, SYS_times, SYS_getcpu, SYS_umask, SYS_prctl, 0x5056, 0x5057,
    };
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
    long answered = 0;
    for (long i = 0; i < n; i++) {
        long nr = (rnd() % 8 == 0) ? (long)(rnd() % 1024) : calls[rnd() % (sizeof(calls) / sizeof(calls[0]))];
        if (untamable(nr)) {
            continue;
        }
        uint64_t a[6];
        for (int k = 0; k < 6; k++) {
            a[k] = hostile_value();
        }
        /* tame what would touch the console, block, or map over the program; everything else stays hostile */
        switch (nr) {
        case SYS_read: case SYS_readv: case SYS_write: case SYS_writev: case SYS_close: case SYS_ioctl:
        case SYS_pread64: case SYS_pwrite64: case SYS_fcntl: case SYS_dup3:
            if (a[0] <= 2) {
                a[0] = 77;
            }
            if ((nr == SYS_dup3 || nr == SYS_fcntl) && a[1] <= 2) {
                a[1] = 50;
            }
            break;
        case SYS_mmap:
            a[3] &= ~(uint64_t)(MAP_FIXED | MAP_FIXED_NOREPLACE);
            a[1] &= (1ull << 30) - 1;
            break;
        case SYS_futex:
            a[1] = (a[1] & 0x180) | (rnd() % 2 ? 1 /* FUTEX_WAKE */ : 10 /* FUTEX_WAKE_BITSET */);
            break;
        case SYS_poll:
            a[2] = 0;
            break;
        case SYS_prctl:
            a[0] = rnd() % 2 ? 15 : 16; /* PR_SET_NAME / PR_GET_NAME */
            break;
        default:
            break;
        }
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        answered++;
    }
    printf("fuzz: %ld hostile system calls answered, the library OS stayed up\n", answered);
    return 0;
}

static int refused(void)
{
    expect_errno("fork", syscall(SYS_fork), ENOSYS);
    char *argv[] = { "/bin/true", NULL };
    expect_errno("execve", syscall(SYS_execve, "/bin/true", argv, environ), ENOSYS);
    expect_errno("syscall(1000)", syscall(1000, 1, 2, 3), ENOSYS);
    printf("refused: %d failure(s)\n", failures);
    return failures != 0;
}

static int hypercalls(void)
{
    printf("on paravirt: %s\n", pv_linux_on_paravirt() ? "yes" : "no");
    printf("hypercall 0x1000(20, 2) = %ld\n", pv_linux_hypercall(0x1000, 20, 2, 0, 0, 0));
    char text[] = "buffer to the host and back";
    long n = pv_linux_hypercall_buffer(0x1001, text, strlen(text), 0, 0, 0);
    printf("hypercall 0x1001 = %ld \"%s\"\n", n, text);
    printf("unregistered 0x1fff = %ld\n", pv_linux_hypercall(0x1fff, 0, 0, 0, 0, 0));
    printf("core code 0x0100 (console_write) = %ld\n", pv_linux_hypercall(0x0100, 0, 0, 0, 0, 0));
    static char big[PV_LINUX_MAX_HYPERCALL_BUFFER + 1];
    printf("oversized buffer = %ld\n", pv_linux_hypercall_buffer(0x1001, big, sizeof(big), 0, 0, 0));
    printf("wild buffer = %ld\n", pv_linux_hypercall_buffer(0x1001, (void *)0xdead0000, 16, 0, 0, 0));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* unbuffered: every line is out before the final crash */
    if (argc > 1 && strcmp(argv[1], "refused") == 0) {
        return refused();
    }
    if (argc > 1 && strcmp(argv[1], "hypercall") == 0) {
        return hypercalls();
    }
    if (argc > 3 && strcmp(argv[1], "fuzz") == 0) {
        return fuzz(strtoull(argv[2], NULL, 10), atol(argv[3]));
    }
    if (argc > 2 && strcmp(argv[1], "syscalls") == 0) {
        long n = atol(argv[2]);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n; i++) {
            syscall(SYS_getppid);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)(n > 0 ? n : 1);
        printf("syscalls %ld %.1f\n", n, ns);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "oom") == 0) {
        for (size_t total = 0;; total += 1 << 20) {
            char *block = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (block == MAP_FAILED) {
                printf("mmap failed after %zu MiB\n", total >> 20);
                return 1;
            }
            memset(block, 1, 1 << 20);
        }
    }
    if (argc > 1 && strcmp(argv[1], "stdin") == 0) {
        char line[128];
        if (fgets(line, sizeof(line), stdin) == NULL) {
            printf("stdin: nothing\n");
            return 1;
        }
        printf("stdin: %s", line);
        return 0;
    }

    /* system calls that do not exist and pointers that point nowhere */
    expect_errno("syscall(1000)", syscall(1000, 1, 2, 3), ENOSYS);
    expect_errno("write from 0xdead0000", syscall(SYS_write, 1, (void *)0xdead0000, 10), EFAULT);
    expect_errno("write from a kernel address", syscall(SYS_write, 1, (void *)0xffff800000100000ull, 16), EFAULT);
    expect_errno("write with a length that wraps", syscall(SYS_write, 1, "x", (size_t)-2), EFAULT);
    int zero = open("/dev/zero", O_RDONLY);
    expect_errno("read /dev/zero into 0x10", syscall(SYS_read, zero, (void *)0x10, 4), EFAULT);
    close(zero);
    expect_errno("clock_gettime into 0x1", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)1), EFAULT);
    expect_errno("openat with a wild path", syscall(SYS_openat, AT_FDCWD, (void *)0xdead0000, O_RDONLY), EFAULT);
    expect_errno("uname into read-only memory", syscall(SYS_uname, (void *)main), EFAULT);
    expect_errno("close(77)", close(77), EBADF);

    /* files: what exists, what does not */
    expect_errno("open /etc/definitely-not-here", open("/etc/definitely-not-here", O_RDONLY), ENOENT);
    struct stat st;
    expect_errno("stat /nonexistent/dir/file", stat("/nonexistent/dir/file", &st), ENOENT);
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    expect("readlink /proc/self/exe", n > 0);
    int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    char buf[4096];
    ssize_t m = maps >= 0 ? read(maps, buf, sizeof(buf) - 1) : -1;
    if (m > 0) {
        buf[m] = 0;
    }
    expect("/proc/self/maps lists the stack", m > 0 && strstr(buf, "[stack]") != NULL);
    if (maps >= 0) {
        expect_errno("getdents64 on a file", syscall(SYS_getdents64, maps, buf, sizeof(buf)), ENOTDIR);
        close(maps);
    }

    /* address space */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 16 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect("mmap 16 pages PROT_NONE", p != MAP_FAILED);
    expect("mprotect 4 pages read-write", mprotect(p + 4 * page, 4 * page, PROT_READ | PROT_WRITE) == 0);
    memset(p + 4 * page, 0x5a, 4 * page);
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    if (sigsetjmp(jump, 1) == 0) {
        p[0] = 1; /* PROT_NONE */
        printf("PROT_NONE write: NO FAULT\n");
        failures++;
    } else {
        expect("SIGSEGV handler sees the address and SEGV_ACCERR", fault_addr == (uintptr_t)p && fault_code == SEGV_ACCERR);
    }
    if (sigsetjmp(jump, 1) == 0) {
        *nowhere = 1; /* nothing mapped */
        printf("null page write: NO FAULT\n");
        failures++;
    } else {
        expect("SIGSEGV handler sees 0x40 and SEGV_MAPERR", fault_addr == 0x40 && fault_code == SEGV_MAPERR);
    }
    expect("munmap the middle", munmap(p + 2 * page, page) == 0);
    char *q = mremap(p + 4 * page, 4 * page, 64 * page, MREMAP_MAYMOVE);
    expect("mremap grows and keeps the contents", q != MAP_FAILED && q[0] == 0x5a && q[4 * page - 1] == 0x5a);
    q[63 * page] = 7;
    expect("the grown part is usable", q[63 * page] == 7);

    threads();

    /* signals: an alternate stack, a blocked signal */
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
    expect("sigaltstack", sigaltstack(&ss, NULL) == 0);
    struct sigaction su = { 0 };
    su.sa_handler = on_usr1;
    su.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &su, NULL);
    raise(SIGUSR1);
    expect("SIGUSR1 handler ran on the alternate stack", usr1_on_altstack);
    signal(SIGUSR2, on_usr2);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, &old);
    raise(SIGUSR2);
    sigset_t pending;
    sigpending(&pending);
    expect("a blocked SIGUSR2 stays pending", usr2_count == 0 && sigismember(&pending, SIGUSR2));
    sigprocmask(SIG_SETMASK, &old, NULL);
    expect("unblocking delivers it", usr2_count == 1);

    printf("edge: %d failure(s); now a null dereference without a handler\n", failures);
    signal(SIGSEGV, SIG_DFL);
    nowhere = NULL;
    *nowhere = 1;
    return 99; /* not reached */
}
