/*
 * exec.c: maps the application ELF (static ET_EXEC, or static-pie ET_DYN at DYN_BASE) from its boot module and
 * builds the initial stack exactly as Linux's binfmt_elf does:
 *
 *   rsp -> argc | argv[0..argc-1] | NULL | envp[...] | NULL | auxv pairs ... AT_NULL | padding |
 *          16 random bytes (AT_RANDOM) | "x86_64" (AT_PLATFORM) | argument and environment strings | execfn
 */
#include "kernel.h"

char exec_path[256] = "/app";
u64 exec_entry;
const u8 *exec_args_data = (const u8 *)"";
u64 exec_args_len, exec_env_off;
u64 exec_image_phys, exec_image_size;

static const pv_boot_module *find_module(const pv_boot_info *bi, u32 kind)
{
    if (bi->size < sizeof(pv_boot_info) || bi->boot_modules == 0 || bi->boot_module_count > 64) {
        return NULL;
    }
    const pv_boot_module *m = phys_to_virt(bi->boot_modules);
    for (u32 i = 0; i < bi->boot_module_count; i++) {
        if (m[i].kind == kind) {
            return &m[i];
        }
    }
    return NULL;
}

static bool fits(u64 off, u64 len, u64 size)
{
    return off <= size && len <= size - off;
}

struct stack_builder {
    u8 *buf;       /* kernel copy of the top of the stack */
    u64 top;       /* user address of buf's end */
    u64 size;
    u64 used;      /* bytes used from the end */
};

static u64 push_bytes(struct stack_builder *sb, const void *data, u64 len, u64 align)
{
    u64 used = ALIGN_UP(sb->used + len, align);
    if (used > sb->size) {
        panic("the application's arguments and environment do not fit its stack");
    }
    sb->used = used;
    memcpy(sb->buf + sb->size - used, data, len);
    return sb->top - used;
}

void exec_start(const pv_boot_info *bi)
{
    const pv_boot_module *app = find_module(bi, PV_BOOT_MODULE_KIND_LINUX_EXECUTABLE);
    if (app == NULL) {
        panic("no application: the host passed no Linux executable boot module");
    }
    const pv_boot_module *args = find_module(bi, PV_BOOT_MODULE_KIND_LINUX_ARGUMENTS);
    exec_image_phys = app->address;
    exec_image_size = app->size;
    const u8 *file = phys_to_virt(app->address);
    u64 size = app->size;

    /* The host validated the image; check what this loader relies on again (cheap, and keeps it self-contained). */
    const struct elf64_ehdr *eh = (const void *)file;
    if (size < sizeof(*eh) || eh->e_ident[0] != 0x7f || eh->e_ident[1] != 'E' || eh->e_ident[2] != 'L' ||
        eh->e_ident[3] != 'F' || eh->e_ident[4] != 2 || eh->e_machine != 62 ||
        (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) || eh->e_phentsize != sizeof(struct elf64_phdr) ||
        eh->e_phnum == 0 || eh->e_phnum > 64 || !fits(eh->e_phoff, (u64)eh->e_phnum * sizeof(struct elf64_phdr), size)) {
        panic("the application is not a 64-bit x86-64 executable");
    }
    const struct elf64_phdr *ph = (const void *)(file + eh->e_phoff);
    u64 lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_INTERP) {
            panic("the application is dynamically linked; link it statically");
        }
        if (ph[i].p_type == PT_LOAD && ph[i].p_memsz != 0) {
            lo = MIN(lo, ALIGN_DOWN(ph[i].p_vaddr, PAGE_SIZE));
            hi = MAX(hi, ph[i].p_vaddr + ph[i].p_memsz);
        }
    }
    if (lo >= hi) {
        panic("the application has no loadable segment");
    }
    u64 bias = eh->e_type == ET_DYN ? DYN_BASE - lo : 0;
    u64 phdr = 0;
    u64 brk = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        const struct elf64_phdr *p = &ph[i];
        if (p->p_type == PT_PHDR) {
            phdr = p->p_vaddr + bias;
        }
        if (p->p_type != PT_LOAD || p->p_memsz == 0) {
            continue;
        }
        u64 va = p->p_vaddr + bias;
        if (p->p_filesz > p->p_memsz || !fits(p->p_offset, p->p_filesz, size) || va + p->p_memsz < va ||
            va + p->p_memsz > USER_TOP || ((p->p_vaddr - p->p_offset) & (PAGE_SIZE - 1)) != 0) {
            panic("the application's segment %d is malformed", i);
        }
        u64 start = ALIGN_DOWN(va, PAGE_SIZE);
        u64 end = ALIGN_UP(va + p->p_memsz, PAGE_SIZE);
        u32 flags = 0;
        if (p->p_flags & PF_R) flags |= VMA_READ;
        if (p->p_flags & PF_W) flags |= VMA_WRITE | VMA_READ;
        if (p->p_flags & PF_X) flags |= VMA_EXEC | VMA_READ;
        u64 file_offset = p->p_offset - (va - start);
        long r = vm_map_image(start, end - start, flags, file_offset, va + p->p_filesz);
        if (r < 0) {
            panic("cannot map the application's segment %d at 0x%lx (%ld)", i, start, r);
        }
        if (phdr == 0 && eh->e_phoff >= p->p_offset && eh->e_phoff - p->p_offset < p->p_filesz) {
            phdr = va + (eh->e_phoff - p->p_offset);
        }
        brk = MAX(brk, end);
    }
    vm_set_brk_base(brk);
    exec_entry = eh->e_entry + bias;

    /* arguments */
    u32 argc = 0, envc = 0;
    const char *strings = "";
    u64 strings_len = 0;
    if (args != NULL && args->size >= sizeof(pv_linux_args) && args->size <= PV_LINUX_MAX_ARGUMENTS_SIZE) {
        const pv_linux_args *h = phys_to_virt(args->address);
        strings = (const char *)(h + 1);
        strings_len = args->size - sizeof(*h);
        /* count the strings that are really there: never trust the header alone */
        u64 n = 0, pos = 0;
        while (pos < strings_len && n < (u64)h->argc + h->envc) {
            u64 l = 0;
            while (pos + l < strings_len && strings[pos + l] != 0) {
                l++;
            }
            if (pos + l >= strings_len) {
                break;
            }
            pos += l + 1;
            n++;
        }
        argc = (u32)MIN((u64)h->argc, n);
        envc = (u32)(n - argc);
        strings_len = pos;
    }
    if (argc > 0) {
        u64 l = kstrlen(strings);
        u64 c = MIN(l, (u64)sizeof(exec_path) - 1);
        memcpy(exec_path, strings, c);
        exec_path[c] = 0;
    }
    exec_args_data = (const u8 *)strings;
    exec_args_len = strings_len;
    exec_env_off = 0;
    for (u32 i = 0; i < argc; i++) {
        exec_env_off += kstrlen(strings + exec_env_off) + 1;
    }

    /* the main thread's stack */
    u64 stack_top = USER_TOP;
    u64 stack_out;
    if (vm_map(stack_top - STACK_SIZE_MAIN, STACK_SIZE_MAIN, VMA_READ | VMA_WRITE | VMA_STACK, true, false, &stack_out) < 0) {
        panic("cannot map the main thread's stack");
    }
    struct stack_builder sb;
    sb.size = PV_LINUX_MAX_ARGUMENTS_SIZE + 64 * 1024;
    sb.buf = kmalloc(sb.size);
    if (sb.buf == NULL) {
        panic("out of memory building the stack");
    }
    sb.top = stack_top;
    sb.used = 0;
    u64 execfn = push_bytes(&sb, exec_path, kstrlen(exec_path) + 1, 1);
    u64 *ptrs = kmalloc(((u64)argc + envc + 2) * 8);
    if (ptrs == NULL) {
        panic("out of memory building the stack");
    }
    /* strings, last first so argv[0] is lowest, as Linux copies them */
    u64 pos = strings_len;
    for (int k = (int)(argc + envc) - 1; k >= 0; k--) {
        u64 start = pos - 1;
        while (start > 0 && strings[start - 1] != 0) {
            start--;
        }
        ptrs[k] = push_bytes(&sb, strings + start, pos - start, 1);
        pos = start;
    }
    u64 platform = push_bytes(&sb, "x86_64", 7, 1);
    u8 rnd[16];
    if (host_random(rnd, sizeof(rnd)) < 0) {
        memset(rnd, 0x5a, sizeof(rnd));
    }
    u64 random = push_bytes(&sb, rnd, sizeof(rnd), 16);

    u64 auxv[][2] = {
        { AT_HWCAP, cpu_hwcap },
        { AT_PAGESZ, PAGE_SIZE },
        { AT_CLKTCK, 100 },
        { AT_PHDR, phdr },
        { AT_PHENT, sizeof(struct elf64_phdr) },
        { AT_PHNUM, eh->e_phnum },
        { AT_BASE, 0 },
        { AT_FLAGS, 0 },
        { AT_ENTRY, exec_entry },
        { AT_UID, 0 },
        { AT_EUID, 0 },
        { AT_GID, 0 },
        { AT_EGID, 0 },
        { AT_SECURE, 0 },
        { AT_RANDOM, random },
        { AT_HWCAP2, 0 },
        { AT_EXECFN, execfn },
        { AT_PLATFORM, platform },
        { AT_MINSIGSTKSZ, MINSIGSTKSZ },
        { AT_NULL, 0 },
    };
    u64 words = 1 + (u64)argc + 1 + (u64)envc + 1 + ARRAY_SIZE(auxv) * 2;
    u64 sp = ALIGN_DOWN(sb.top - sb.used - words * 8, 16);
    u64 table_bytes = sb.top - sp - sb.used;
    if (sb.top - sp > sb.size) {
        panic("the application's arguments and environment do not fit its stack");
    }
    u64 *t = (u64 *)(sb.buf + sb.size - (sb.top - sp));
    memset(t, 0, table_bytes);
    u64 w = 0;
    t[w++] = argc;
    for (u32 i = 0; i < argc; i++) {
        t[w++] = ptrs[i];
    }
    t[w++] = 0;
    for (u32 i = 0; i < envc; i++) {
        t[w++] = ptrs[argc + i];
    }
    t[w++] = 0;
    for (u64 i = 0; i < ARRAY_SIZE(auxv); i++) {
        t[w++] = auxv[i][0];
        t[w++] = auxv[i][1];
    }
    if (copy_to_user(sp, t, sb.top - sp) < 0) {
        panic("cannot write the initial stack");
    }
    kfree(ptrs);
    kfree(sb.buf);

    /* the main thread */
    struct thread *main = thread_create();
    if (main == NULL) {
        panic("out of memory for the main thread");
    }
    memcpy(main->name, "app", 4);
    struct regs *r = main->regs;
    memset(r, 0, sizeof(*r));
    r->rip = exec_entry;
    r->cs = USER_CS;
    r->rflags = RFLAGS_IF | 2;
    r->rsp = sp;
    r->ss = USER_DS;
    /* rcx (0) != rip: the first return leaves by iretq, every other register zero as on Linux */
    main->state = T_RUNNABLE;
    current = main;
    main->run_started = now_ns();
    cpu_set_kernel_stack(main->kstack + KSTACK_SIZE);
    __asm__ volatile("fxrstor64 %0" ::"m"(main->fpu));
    wrmsr(MSR_FS_BASE, 0);
    if (kverbose) {
        kprintf("paravirt-linux: %s: entry 0x%lx, stack 0x%lx, %u argument(s), %u environment variable(s)\n",
                exec_path, exec_entry, sp, argc, envc);
    }
    return_to_user(r);
}
