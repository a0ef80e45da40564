/*
 * crash: fails on purpose, to show what Paravirt tells a guest author when a guest crashes (docs/debugging.md):
 * the fault, the registers, the code around rip and a backtrace with function names and source lines
 * (`paravirt run crash.elf`), an ELF core file (`--core crash.core`, then `gdb crash.elf crash.core`), and gdb.
 *
 * The command line picks the failure:
 *   what=divide (default)   average() divides by a count of zero: a divide error (#DE)
 *   what=wild               sum_at() reads through a pointer past the end of guest memory: a page fault
 *   what=panic              check_config() calls pv_panic(): the panic hypercall
 *   what=trap               __builtin_trap() (ud2): an invalid opcode (#UD)
 *   what=signal             what a Linux-personality guest does with a fatal signal: pv_panic_at() with the
 *                           registers of the failing context (here: a SIGSEGV at a made-up address, in report_signal)
 * Every failure happens two calls below main(), so a backtrace has something to show.
 */
#include <paravirt/paravirt.h>

/* Outside the optimizer's sight, so the failures happen at run time. */
static volatile int g_count;
static volatile uintptr_t g_wild = 0x7ead00000000u; /* canonical (bit 47 clear: not a #GP) and far past guest memory */

__attribute__((noinline)) static int average(const int *values, int count)
{
    int sum = 0;
    for (int i = 0; i < count; i++) {
        sum += values[i];
    }
    return sum / count; /* count == 0: #DE */
}

__attribute__((noinline)) static int sum_at(const int *values, int count)
{
    int sum = 0;
    for (int i = 0; i < count; i++) {
        sum += values[i]; /* values is wild: a page fault */
    }
    return sum;
}

__attribute__((noinline)) static void check_config(int count)
{
    if (count == 0) {
        pv_panic("check_config: no samples configured (count %d)", count);
    }
}

/* A Linux-personality guest reports a fatal signal with the registers of the interrupted context; here the context
   is this function's own, taken with inline assembly, and the fault is made up. */
__attribute__((noinline)) static void report_signal(void)
{
    pv_panic_frame frame = {
        .size = sizeof(frame),
        .signal = 11,             /* SIGSEGV */
        .vector = 14,             /* #PF */
        .error_code = 4,          /* a user-mode read of a not-present page */
        .fault_address = 0xdead00000000u,
    };
    __asm__ volatile("leaq 0(%%rip), %0\n\tmovq %%rsp, %1\n\tmovq %%rbp, %2\n\tmovq %%rbx, %3"
                     : "=r"(frame.rip), "=r"(frame.rsp), "=r"(frame.rbp), "=r"(frame.rbx));
    pv_panic_at(&frame, "SIGSEGV: segmentation fault at 0xdead00000000");
}

__attribute__((noinline)) static int compute(const char *what)
{
    int values[4] = { 3, 1, 4, 1 };
    if (strcmp(what, "wild") == 0) {
        return sum_at((const int *)g_wild, 4);
    }
    if (strcmp(what, "panic") == 0) {
        check_config(g_count);
        return 0;
    }
    if (strcmp(what, "trap") == 0) {
        __builtin_trap();
    }
    if (strcmp(what, "signal") == 0) {
        report_signal();
    }
    return average(values, g_count);
}

int main(void)
{
    char what[16];
    if (pv_cmdline_get("what", what, sizeof(what)) < 0) {
        memcpy(what, "divide", sizeof("divide"));
    }
    pv_printf("crash: about to fail (%s)\n", what);
    int result = compute(what);
    pv_printf("crash: unexpectedly survived with %d\n", result);
    return 0;
}
