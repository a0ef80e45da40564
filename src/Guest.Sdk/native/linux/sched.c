/*
 * sched.c: threads on one vCPU. A round-robin run queue; a thread that blocks (futex, sleep, console or pipe read)
 * leaves it until it is woken or its deadline passes. With nothing runnable the vCPU waits in the host (the poll
 * hypercall) until the earliest deadline or a device event.
 *
 * Preemption: kernel code is never preempted (it runs with interrupts off). A thread that used up its time slice
 * gives way when it next enters the library OS (a system call or a fault), and, where the host offers the
 * paravirtual one-shot timer (PV_FEATURE0_TIMER, hypercall timer_set), also when it never does: every return to user
 * mode with another thread waiting arms the timer for the end of the running thread's slice, and its interrupt
 * (TIMER_VECTOR, taken in user mode) sends the thread through the same preemption check.
 */
#include "kernel.h"

extern struct fxsave_area fpu_initial;

#define TIME_SLICE_NS 10000000ull
static bool timer_offered;
static u64 timer_armed; /* the deadline the host's timer is set to, 0 when none */

struct thread *current;
int thread_count;
static struct thread *all_threads;
static struct thread *run_head, *run_tail;
static struct thread *zombies;
static int next_tid = 1;

u64 now_ns(void) { return pv_clock_monotonic_ns(); }
u64 realtime_ns(void) { return pv_clock_wall_ns(); }

struct thread *thread_first(void) { return all_threads; }

struct thread *thread_by_tid(int tid)
{
    for (struct thread *t = all_threads; t != NULL; t = t->next_all) {
        if (t->tid == tid && t->state != T_DEAD) {
            return t;
        }
    }
    return NULL;
}

static void run_enqueue(struct thread *t)
{
    t->next_run = NULL;
    if (run_tail) {
        run_tail->next_run = t;
    } else {
        run_head = t;
    }
    run_tail = t;
}

static struct thread *run_dequeue(void)
{
    struct thread *t = run_head;
    if (t) {
        run_head = t->next_run;
        if (run_head == NULL) {
            run_tail = NULL;
        }
        t->next_run = NULL;
    }
    return t;
}

struct thread *thread_create(void)
{
    struct thread *t = kmalloc(sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    u64 stack = pmm_alloc_contig(KSTACK_SIZE / PAGE_SIZE);
    if (stack == 0) {
        kfree(t);
        return NULL;
    }
    t->kstack = (u64)(uintptr_t)phys_to_virt(stack);
    t->regs = (struct regs *)(uintptr_t)(t->kstack + KSTACK_SIZE - sizeof(struct regs));
    t->tid = next_tid++;
    t->state = T_BLOCKED; /* not runnable until sched_start_thread */
    t->wake_deadline = UINT64_MAX;
    t->fpu = fpu_initial;
    t->altstack.flags = SS_DISABLE;
    t->next_all = all_threads;
    all_threads = t;
    thread_count++;
    return t;
}

/* Makes t runnable: its first switch returns through thread_first_return with t->regs. */
void sched_start_thread(struct thread *t)
{
    u64 *sp = (u64 *)(uintptr_t)t->regs;
    *--sp = (u64)(uintptr_t)thread_first_return;
    for (int i = 0; i < 6; i++) {
        *--sp = 0; /* rbp rbx r12 r13 r14 r15 */
    }
    t->ksp = (u64)(uintptr_t)sp;
    t->state = T_RUNNABLE;
    run_enqueue(t);
}

static void reap_zombies(void)
{
    struct thread **pp = &zombies;
    while (*pp) {
        struct thread *z = *pp;
        if (z == current) {
            pp = &z->next_run;
            continue;
        }
        *pp = z->next_run;
        struct thread **ap = &all_threads;
        while (*ap && *ap != z) {
            ap = &(*ap)->next_all;
        }
        if (*ap) {
            *ap = z->next_all;
        }
        pmm_free_contig(virt_to_phys((void *)(uintptr_t)z->kstack), KSTACK_SIZE / PAGE_SIZE);
        kfree(z);
    }
}

static void switch_to(struct thread *next, u64 now)
{
    struct thread *prev = current;
    prev->cpu_ns += now - prev->run_started;
    next->run_started = now;
    __asm__ volatile("fxsave64 %0" : "=m"(prev->fpu));
    __asm__ volatile("fxrstor64 %0" ::"m"(next->fpu));
    wrmsr(MSR_FS_BASE, next->fs_base);
    cpu_set_kernel_stack(next->kstack + KSTACK_SIZE);
    current = next;
    switch_stacks(&prev->ksp, next->ksp);
    /* back on prev's stack: prev is current again */
    reap_zombies();
}

/* Wakes blocked threads whose deadline passed; returns the earliest remaining deadline. */
static u64 wake_expired(u64 now)
{
    u64 earliest = UINT64_MAX;
    for (struct thread *t = all_threads; t != NULL; t = t->next_all) {
        if (t->state != T_BLOCKED || t->wake_deadline == UINT64_MAX) {
            continue;
        }
        if (t->wake_deadline <= now) {
            wake_thread(t, WAKE_TIMEOUT);
        } else if (t->wake_deadline < earliest) {
            earliest = t->wake_deadline;
        }
    }
    return earliest;
}

static bool deadlock_reported;

/* Nothing runnable: wait in the host for the earliest deadline or a device event. */
static void idle(void)
{
    u64 deadline = wake_expired(now_ns());
    if (run_head != NULL) {
        return;
    }
    fs_poll_console();
    if (run_head != NULL) {
        return;
    }
    u64 events = fs_wait_events();
    if (deadline == UINT64_MAX && events == 0 && !deadlock_reported) {
        deadlock_reported = true;
        kprintf("paravirt-linux: all %d thread(s) are blocked and nothing can wake them (deadlock); waiting for "
                "the host's timeout\n", thread_count);
    }
    long r = pv_poll(deadline, events);
    if (r > 0) {
        fs_events((u64)r);
    }
    fs_poll_console();
    wake_expired(now_ns());
}

void schedule(void)
{
    struct thread *prev = current;
    if (prev->state == T_RUNNABLE) {
        run_enqueue(prev);
    }
    for (;;) {
        if (run_head == NULL) {
            idle();
            continue;
        }
        /* timeouts of sleeping threads count even while others run; one clock read per switch */
        u64 now = now_ns();
        wake_expired(now);
        struct thread *next = run_dequeue();
        if (next == prev) {
            prev->run_started = now;
            return;
        }
        switch_to(next, now);
        return;
    }
}

void sched_yield_now(void)
{
    if (run_head == NULL) {
        return;
    }
    schedule();
}

/* Reading the clock is a hypercall (a VM exit): look at it only every PREEMPT_CHECK_ENTRIES entries into the
 * library OS, and only while another thread is waiting to run. */
#define PREEMPT_CHECK_ENTRIES 32

void sched_init(void)
{
    timer_offered = (pv_boot_info_get()->features0 & PV_FEATURE0_TIMER) != 0;
}

void sched_timer_interrupt(void)
{
    timer_armed = 0;
    wake_expired(now_ns());                               /* a sleeper whose time came is runnable now */
    current->entries_since_check = PREEMPT_CHECK_ENTRIES; /* and the next preemption check reads the clock */
}

/* The earliest deadline of a blocked thread, without waking anyone (no clock read). */
static u64 earliest_wake(void)
{
    u64 earliest = UINT64_MAX;
    for (struct thread *t = all_threads; t != NULL; t = t->next_all) {
        if (t->state == T_BLOCKED && t->wake_deadline < earliest) {
            earliest = t->wake_deadline;
        }
    }
    return earliest;
}

void sched_arm_preemption(void)
{
    if (!timer_offered) {
        return;
    }
    /* The running thread must give way when its slice ends if another thread is waiting, and when a sleeper's time
     * comes (it may be the only other thread, and the running one may never enter the library OS again). */
    u64 deadline = earliest_wake();
    if (run_head != NULL && current->run_started + TIME_SLICE_NS < deadline) {
        deadline = current->run_started + TIME_SLICE_NS;
    }
    if (deadline == UINT64_MAX || deadline == timer_armed) {
        return; /* nothing to wait for, or already armed: a timer left armed fires into an empty check */
    }
    if (pv_timer_set(deadline, TIMER_VECTOR) == 0) {
        timer_armed = deadline; /* one hypercall when the deadline changes, not per return to user mode */
    }
}

void sched_check_preempt(void)
{
    if (run_head == NULL || ++current->entries_since_check < PREEMPT_CHECK_ENTRIES) {
        return;
    }
    current->entries_since_check = 0;
    if (now_ns() - current->run_started >= TIME_SLICE_NS) {
        schedule();
    }
}

void wake_thread(struct thread *t, int reason)
{
    if (t->state != T_BLOCKED) {
        return;
    }
    t->state = T_RUNNABLE;
    t->wake_reason = reason;
    t->wait_channel = NULL;
    t->wake_deadline = UINT64_MAX;
    run_enqueue(t);
}

void wake_channel(void *channel, int max)
{
    for (struct thread *t = all_threads; t != NULL && max != 0; t = t->next_all) {
        if (t->state == T_BLOCKED && t->wait_channel == channel) {
            wake_thread(t, WAKE_EVENT);
            if (max > 0) {
                max--;
            }
        }
    }
}

int block_current(void *channel, u64 deadline_ns)
{
    if (signal_pending(current)) {
        return WAKE_SIGNAL;
    }
    current->state = T_BLOCKED;
    current->wait_channel = channel;
    current->wake_deadline = deadline_ns;
    current->wake_reason = WAKE_NONE;
    schedule();
    return current->wake_reason;
}

void thread_exit(int status)
{
    struct thread *t = current;
    if (t->clear_child_tid != 0) {
        u32 zero = 0;
        if (copy_to_user(t->clear_child_tid, &zero, 4) == 0) {
            futex_wake(t->clear_child_tid, 1, FUTEX_BITSET_MATCH_ANY);
        }
    }
    thread_count--;
    if (thread_count == 0) {
        pv_exit(status & 0xff);
    }
    t->state = T_DEAD;
    t->next_run = zombies;
    zombies = t;
    schedule();
    panic("a dead thread was scheduled");
}

/* ---- futexes ------------------------------------------------------------------------------------------------------ */

static char futex_channel;

long futex_wait(u64 uaddr, u32 val, u64 deadline, u32 bitset)
{
    if ((uaddr & 3) != 0) {
        return -EINVAL;
    }
    if (bitset == 0) {
        return -EINVAL;
    }
    u32 cur;
    if (copy_from_user(&cur, uaddr, 4) < 0) {
        return -EFAULT;
    }
    if (cur != val) {
        return -EAGAIN;
    }
    if (deadline != UINT64_MAX && deadline <= now_ns()) {
        return -ETIMEDOUT;
    }
    current->futex_addr = uaddr;
    current->futex_bitset = bitset;
    int why = block_current(&futex_channel, deadline);
    current->futex_addr = 0;
    if (why == WAKE_EVENT) {
        return 0;
    }
    if (why == WAKE_TIMEOUT) {
        return -ETIMEDOUT;
    }
    return deadline == UINT64_MAX ? -ERESTARTSYS : -EINTR;
}

long futex_wake(u64 uaddr, int count, u32 bitset)
{
    if ((uaddr & 3) != 0) {
        return -EINVAL;
    }
    if (bitset == 0) {
        return -EINVAL;
    }
    long woken = 0;
    for (struct thread *t = all_threads; t != NULL && woken < count; t = t->next_all) {
        if (t->state == T_BLOCKED && t->wait_channel == &futex_channel && t->futex_addr == uaddr &&
            (t->futex_bitset & bitset) != 0) {
            wake_thread(t, WAKE_EVENT);
            woken++;
        }
    }
    return woken;
}

long futex_requeue(u64 uaddr, int wake, int requeue, u64 uaddr2)
{
    if ((uaddr & 3) != 0 || (uaddr2 & 3) != 0) {
        return -EINVAL;
    }
    long n = 0;
    for (struct thread *t = all_threads; t != NULL; t = t->next_all) {
        if (t->state == T_BLOCKED && t->wait_channel == &futex_channel && t->futex_addr == uaddr) {
            if (n < wake) {
                wake_thread(t, WAKE_EVENT);
                n++;
            } else if (requeue > 0) {
                t->futex_addr = uaddr2;
                requeue--;
                n++;
            }
        }
    }
    return n;
}

/* ---- sleeping ----------------------------------------------------------------------------------------------------- */

static char sleep_channel;

/* Sleeps until the monotonic deadline; 0, or -EINTR when a signal is to be handled first. */
long sleep_until(u64 deadline)
{
    while (now_ns() < deadline) {
        int why = block_current(&sleep_channel, deadline);
        if (why == WAKE_SIGNAL) {
            return -EINTR;
        }
    }
    return 0;
}
