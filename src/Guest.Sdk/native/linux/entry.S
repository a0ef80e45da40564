/*
 * entry.S: the library OS's boot path, the system call and exception entries, the return to user mode and the
 * kernel stack switch.
 *
 * Boot: the host enters _start at its guest-physical address (the ELF entry is physical, see linux.ld) in flat
 * identity-mapped long mode. Every symbol is linked at PHYS_OFFSET + its physical address and the code is
 * position independent (-fpie), so until the switch the RIP-relative references below resolve to physical
 * addresses. _start maps the first GiB of memory both at 0 and at PHYS_OFFSET with early page tables, jumps to
 * its high address, and calls kmain on the boot stack; kmain then builds the real tables (all memory at
 * PHYS_OFFSET, nothing in the lower half) and never uses the low mapping again.
 *
 * struct regs (kernel.h) is the frame at the top of each thread's kernel stack, lowest address first:
 *   r15 r14 r13 r12 r11 r10 r9 r8 rbp rdi rsi rdx rcx rbx rax orig_rax error | rip cs rflags rsp ss
 */
#define PHYS_OFFSET 0xffff800000000000
#define USER_DS 0x2b
#define USER_CS 0x33

/* The general-purpose part of struct regs, pushed and popped in one place: rax ends up highest, r15 lowest. */
.macro SAVE_GPRS
    pushq   %rax
    pushq   %rbx
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %rbp
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
.endm

.macro RESTORE_GPRS
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rbp
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rbx
    popq    %rax
.endm

#define R_R11 (4 * 8)
#define R_RCX (12 * 8)
#define R_RAX (14 * 8)
#define R_ORIG_RAX (15 * 8)
#define R_RIP (17 * 8)
#define R_CS (18 * 8)
#define R_RFLAGS (19 * 8)
#define R_RSP (20 * 8)
#define R_SS (21 * 8)

    .section .text.boot, "ax", @progbits
    .code64
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    movq    %rdi, %r12                      /* boot info (guest-physical) */

    /* zero the early tables (3 pages) */
    leaq    early_pml4(%rip), %rdi
    movl    $(3 * 4096 / 8), %ecx
    xorl    %eax, %eax
    rep stosq

    /* early_pd: 512 x 2 MiB pages = the first GiB, present | writable | large */
    leaq    early_pd(%rip), %rdi
    movq    $0x83, %rax
    movl    $512, %ecx
1:  movq    %rax, (%rdi)
    addq    $0x200000, %rax
    addq    $8, %rdi
    decl    %ecx
    jnz     1b

    leaq    early_pd(%rip), %rax
    orq     $3, %rax
    movq    %rax, early_pdpt(%rip)
    leaq    early_pdpt(%rip), %rax
    orq     $3, %rax
    movq    %rax, early_pml4(%rip)              /* PML4[0]: identity, for the next few instructions */
    movq    %rax, early_pml4 + 256 * 8(%rip)    /* PML4[256]: PHYS_OFFSET */
    leaq    early_pml4(%rip), %rax
    movq    %rax, %cr3

    movabsq $2f, %rax                       /* the link-time (high) address */
    jmpq    *%rax
2:
    leaq    boot_stack_top(%rip), %rsp
    xorl    %ebp, %ebp
    movq    %r12, %rdi
    call    kmain
3:  cli
    hlt
    jmp     3b
    .size _start, . - _start

/* ---- system calls ------------------------------------------------------------------------------------------ */

    .text
    .globl syscall_entry
    .type syscall_entry, @function
    .balign 16
syscall_entry:
    /* SFMASK cleared IF, TF, DF, AC. rcx = user rip, r11 = user rflags, rsp = user rsp (untrusted). */
    movq    %rsp, cpu_user_rsp(%rip)
    movq    cpu_kstack_top(%rip), %rsp
    pushq   $USER_DS
    pushq   cpu_user_rsp(%rip)
    pushq   %r11
    pushq   $USER_CS
    pushq   %rcx
    pushq   $0                  /* error */
    pushq   %rax                /* orig_rax */
    SAVE_GPRS
    xorl    %ebp, %ebp
    movq    %rsp, %rdi
    call    syscall_handler
    movq    %rsp, %rdi
    jmp     return_to_user
    .size syscall_entry, . - syscall_entry

/*
 * return_to_user(struct regs *r): the one way back to CPL 3. prepare_user_return (C) delivers signals and
 * reschedules; it returns 1 when the frame may leave by sysretq (rcx == rip, r11 == rflags, canonical rip, the
 * default selectors), else 0 for iretq.
 */
    .globl return_to_user
    .type return_to_user, @function
return_to_user:
    movq    %rdi, %rsp
    call    prepare_user_return
    testl   %eax, %eax
    jz      .Liret
    RESTORE_GPRS                /* r11 = rflags, rcx = rip (both checked) */
    movq    (R_RSP - R_ORIG_RAX)(%rsp), %rsp
    sysretq
.Liret:
    RESTORE_GPRS
    addq    $16, %rsp           /* orig_rax, error */
    iretq
    .size return_to_user, . - return_to_user

/* ---- exceptions and interrupts ------------------------------------------------------------------------------ */

/* Vectors that push an error code: 8 10 11 12 13 14 17 21 29 30. The others push a 0 in its place. */
.macro ISR vec
    .balign 16
isr_\vec:
.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
.else
    pushq   $0
.endif
    pushq   $\vec
    jmp     isr_common
.endm

    .balign 16
isr_common:
    SAVE_GPRS
    cld
    xorl    %ebp, %ebp
    movq    %rsp, %rdi
    call    trap_handler
    /* trap_handler returns only for traps from user mode (kernel-mode traps panic) */
    movq    %rsp, %rdi
    jmp     return_to_user

.altmacro
.macro ISR_N n
    ISR %n
.endm
.set i, 0
.rept 256
    ISR_N %i
    .set i, i + 1
.endr

.macro ISR_ADDR n
    .quad isr_\n
.endm
    .section .rodata
    .balign 8
    .globl isr_stubs
isr_stubs:
.set i, 0
.rept 256
    ISR_ADDR %i
    .set i, i + 1
.endr
.noaltmacro

/* ---- kernel stacks -------------------------------------------------------------------------------------------- */

    .text
/* switch_stacks(u64 *save_rsp, u64 new_rsp): saves the callee-saved registers on this stack, stores rsp, and
 * resumes the thread whose stack is new_rsp (where switch_stacks saved it, or thread_create's initial frame). */
    .globl switch_stacks
    .type switch_stacks, @function
switch_stacks:
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .size switch_stacks, . - switch_stacks

/* A new thread's first switch_stacks returns here, with rsp at its struct regs. */
    .globl thread_first_return
    .type thread_first_return, @function
thread_first_return:
    movq    %rsp, %rdi
    jmp     return_to_user
    .size thread_first_return, . - thread_first_return

/* ---- data ------------------------------------------------------------------------------------------------------ */

    .data
    .balign 8
    .globl cpu_user_rsp
cpu_user_rsp:
    .quad 0

    .section .bss.boot, "aw", @nobits
    .balign 4096
early_pml4:
    .skip 4096
early_pdpt:
    .skip 4096
early_pd:
    .skip 4096
    .balign 16
boot_stack:
    .skip 16384
    .globl boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
