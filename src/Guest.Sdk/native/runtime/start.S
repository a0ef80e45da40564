/*
 * start.S: guest entry point.
 *
 * Entry convention (paravirt/abi.h, PV_ENTRY_*): 64-bit long mode, identity-mapped memory, interrupts off,
 * rip = ELF entry, rdi = guest-physical address of the pv_boot_info, rsp = some stack the host chose.
 *
 * _start does not trust the host's stack: it switches to a 64 KiB stack of its own (section .pv_stack, after .bss,
 * so a guest image's memory needs are fixed at link time) with a 4 KiB guard page below it that nothing uses: the
 * image declares it in a PV_NOTE_TYPE_SANDBOX note (PV_SANDBOX_DECL_KIND_STACK_GUARD), and the host makes it a hole
 * (KVM: outside the memory slots) or a write trap (emulator), so a stack overflow is reported as one, with the
 * address, instead of silently overwriting .bss. Then it clears .bss (the loader zeroes it too; clearing again keeps the runtime
 * correct under any loader), then runs pv_runtime_init(boot_info), main(), and the exit hypercall with main's
 * return value. rsp is 16-byte aligned at every `call` below, as the SysV ABI requires.
 */
#include <paravirt/abi.h>

#define PV_STACK_SIZE 0x10000

    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    .cfi_startproc
    .cfi_undefined rip                  /* the outermost frame: unwinders (crash reports, gdb) stop here */
    cld
    movq    %rdi, %r12                  /* boot info: r12 is callee-saved, nothing below clobbers it */
    leaq    pv_stack_top(%rip), %rsp    /* 16-byte aligned (see .bss below) */
    xorl    %ebp, %ebp                  /* end of frame-pointer chain */

    /* Clear .bss 8 bytes at a time (the linker script aligns __bss_start and __bss_end to 16). The stack is
       in .bss, but nothing lives on it yet. */
    leaq    __bss_start(%rip), %rdi
    leaq    __bss_end(%rip), %rcx
    xorl    %eax, %eax
1:  cmpq    %rcx, %rdi
    jae     2f
    movq    %rax, (%rdi)
    addq    $8, %rdi
    jmp     1b
2:
    movq    %r12, %rdi
    call    pv_runtime_init
    call    main
    movl    %eax, %edi
    call    pv_exit
    /* pv_exit does not return; if a broken host resumes us anyway, stop here. */
3:  hlt
    jmp     3b
    .cfi_endproc
    .size _start, . - _start

    /* The stack and its guard page: NOBITS (zeroed by the loader), outside [__bss_start, __bss_end) so the .bss
       loop above never writes the guard page. The linker script places .pv_stack page aligned after .bss. */
    .section .pv_stack, "aw", @nobits
    .balign PV_SANDBOX_GUARD_PAGE_SIZE
    .globl pv_stack_guard
pv_stack_guard:
    .skip PV_SANDBOX_GUARD_PAGE_SIZE
    .globl pv_stack_bottom
pv_stack_bottom:
    .skip PV_STACK_SIZE
    .globl pv_stack_top
pv_stack_top:

    /* The note that declares the guard page (a pv_sandbox_decl; its address is resolved at link time). */
    .section .note.paravirt, "a", @note
    .balign 4
    .long 9                                   /* namesz: sizeof(PV_NOTE_NAME) */
    .long 64                                  /* descsz: sizeof(pv_sandbox_decl) */
    .long PV_NOTE_TYPE_SANDBOX
    .asciz "Paravirt"
    .balign 4
    .long PV_SANDBOX_DECL_KIND_STACK_GUARD    /* kind */
    .long 0                                   /* flags */
    .quad pv_stack_guard                      /* address */
    .zero 48                                  /* name */

    .section .note.GNU-stack, "", @progbits
