/*
 * vm.c: the application's address space: page tables, mappings (VMAs), demand paging, copy-on-write of the
 * application file's pages, brk, and the checked user-memory accessors.
 *
 * Nothing is mapped eagerly: a mapping is a VMA, and a page gets a frame on its first touch (page fault). The .NET
 * GC reserves hundreds of MiB to GiB of PROT_NONE address space; that costs one VMA and no memory.
 *
 * Leaf PTEs use two software bits: PTE_FRAME says the frame address field holds a frame (also while the page is
 * PROT_NONE, so mprotect back keeps the contents), PTE_OWNED says the frame belongs to this page (freed on unmap;
 * not set for pages of the application file, which are shared with the boot module and copied on the first write).
 */
#include "kernel.h"

bool pmm_owns(u64 phys);

#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_PS (1ull << 7)
#define PTE_G (1ull << 8)
#define PTE_OWNED (1ull << 9)
#define PTE_FRAME (1ull << 10)
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

#define PF_PRESENT 1
#define PF_WRITE 2
#define PF_USER 4
#define PF_FETCH 16

static u64 *pml4;           /* kernel virtual address of the PML4 */
static u64 pml4_phys;
static u64 image_phys;      /* the application file (boot module) */
static u64 image_size;

static struct vma *vmas;
static int vma_count;
static int vma_cap;
#define VMA_MAX 65530

static u64 vm_brk_start, vm_brk_end;
static u64 brk_mapped;      /* page-aligned end of the brk mapping */

/* ---- page tables ------------------------------------------------------------------------------------------------ */

void vm_init(u64 app_phys, u64 app_size)
{
    const pv_boot_info *bi = pv_boot_info_get();
    image_phys = app_phys;
    image_size = app_size;
    pml4_phys = pmm_alloc();
    if (pml4_phys == 0) {
        panic("out of memory for page tables");
    }
    pml4 = phys_to_virt(pml4_phys);
    /* Direct map: all guest memory at PHYS_OFFSET with 2 MiB pages, supervisor only. */
    u64 mem = ALIGN_UP(bi->memory_size, 2ull << 20);
    u64 gib = (mem + (1ull << 30) - 1) >> 30;
    if (gib > 512) {
        panic("guest memory too large for the direct map");
    }
    u64 pdpt_phys = pmm_alloc();
    if (pdpt_phys == 0) {
        panic("out of memory for page tables");
    }
    u64 *pdpt = phys_to_virt(pdpt_phys);
    for (u64 g = 0; g < gib; g++) {
        u64 pd_phys = pmm_alloc();
        if (pd_phys == 0) {
            panic("out of memory for page tables");
        }
        u64 *pd = phys_to_virt(pd_phys);
        for (u64 j = 0; j < 512; j++) {
            u64 phys = (g << 30) | (j << 21);
            if (phys >= mem) {
                break;
            }
            pd[j] = phys | PTE_P | PTE_W | PTE_PS;
        }
        pdpt[g] = pd_phys | PTE_P | PTE_W;
    }
    pml4[256] = pdpt_phys | PTE_P | PTE_W;
    vma_cap = 64;
    vmas = kmalloc(sizeof(struct vma) * (u64)vma_cap);
    if (vmas == NULL) {
        panic("out of memory for the address space");
    }
}

void vm_activate(void)
{
    __asm__ volatile("mov %0, %%cr3" ::"r"(pml4_phys) : "memory");
}

/* The leaf PTE of va, allocating the tables on the way when create; NULL when absent (or out of memory). */
static u64 *pte_walk(u64 va, bool create)
{
    u64 *table = pml4;
    for (int level = 3; level > 0; level--) {
        u64 idx = (va >> (12 + 9 * level)) & 511;
        u64 e = table[idx];
        if ((e & PTE_P) == 0) {
            if (!create) {
                return NULL;
            }
            u64 phys = pmm_alloc();
            if (phys == 0) {
                return NULL;
            }
            e = phys | PTE_P | PTE_W | PTE_U;
            table[idx] = e;
        }
        table = phys_to_virt(e & PTE_ADDR);
    }
    return &table[(va >> 12) & 511];
}

static u64 leaf_flags(u32 vflags, bool owned)
{
    u64 f = PTE_FRAME | PTE_U;
    if (owned) {
        f |= PTE_OWNED;
    }
    if (vflags & (VMA_READ | VMA_WRITE | VMA_EXEC)) {
        f |= PTE_P;
    }
    if ((vflags & VMA_WRITE) && owned) {
        f |= PTE_W;
    }
    if (!(vflags & VMA_EXEC) && cpu_has_nx) {
        f |= PTE_NX;
    }
    return f;
}

/* Frees the frames of [start, end) and clears their PTEs. */
static void unmap_pages(u64 start, u64 end)
{
    for (u64 va = start; va < end;) {
        /* skip whole absent tables quickly */
        u64 *table = pml4;
        bool hole = false;
        for (int level = 3; level > 0; level--) {
            u64 idx = (va >> (12 + 9 * level)) & 511;
            if ((table[idx] & PTE_P) == 0) {
                u64 span = 1ull << (12 + 9 * level);
                va = ALIGN_DOWN(va, span) + span;
                hole = true;
                break;
            }
            table = phys_to_virt(table[idx] & PTE_ADDR);
        }
        if (hole) {
            continue;
        }
        u64 *pte = &table[(va >> 12) & 511];
        if (*pte & PTE_FRAME) {
            if (*pte & PTE_OWNED) {
                pmm_free(*pte & PTE_ADDR);
            }
            *pte = 0;
            invlpg(va);
        }
        va += PAGE_SIZE;
    }
}

/* Applies vflags to the present pages of [start, end). */
static void protect_pages(u64 start, u64 end, u32 vflags)
{
    for (u64 va = start; va < end; va += PAGE_SIZE) {
        u64 *pte = pte_walk(va, false);
        if (pte == NULL) {
            va = ALIGN_DOWN(va, 2ull << 20) + (2ull << 20) - PAGE_SIZE;
            continue;
        }
        if ((*pte & PTE_FRAME) == 0) {
            continue;
        }
        *pte = (*pte & PTE_ADDR) | leaf_flags(vflags, (*pte & PTE_OWNED) != 0);
        invlpg(va);
    }
}

/* ---- VMAs --------------------------------------------------------------------------------------------------------- */

int vm_count(void) { return vma_count; }
const struct vma *vm_at(int i) { return &vmas[i]; }

/* Index of the first VMA with end > addr (vma_count when none). */
static int vma_lower_bound(u64 addr)
{
    int lo = 0, hi = vma_count;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (vmas[mid].end <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

const struct vma *vm_find(u64 addr)
{
    int i = vma_lower_bound(addr);
    if (i < vma_count && vmas[i].start <= addr) {
        return &vmas[i];
    }
    return NULL;
}

static bool vma_reserve(int extra)
{
    if (vma_count + extra <= vma_cap) {
        return true;
    }
    if (vma_count + extra > VMA_MAX) {
        return false;
    }
    int cap = vma_cap * 2;
    while (cap < vma_count + extra) {
        cap *= 2;
    }
    struct vma *n = kmalloc(sizeof(struct vma) * (u64)cap);
    if (n == NULL) {
        return false;
    }
    memcpy(n, vmas, sizeof(struct vma) * (u64)vma_count);
    kfree(vmas);
    vmas = n;
    vma_cap = cap;
    return true;
}

static void vma_insert_at(int i, const struct vma *v)
{
    memmove(&vmas[i + 1], &vmas[i], sizeof(struct vma) * (u64)(vma_count - i));
    vmas[i] = *v;
    vma_count++;
}

static void vma_remove_at(int i)
{
    memmove(&vmas[i], &vmas[i + 1], sizeof(struct vma) * (u64)(vma_count - i - 1));
    vma_count--;
}

static bool vma_mergeable(const struct vma *a, const struct vma *b)
{
    if (a->end != b->start || a->flags != b->flags) {
        return false;
    }
    if (a->flags & VMA_IMAGE) {
        return a->file_offset + (a->end - a->start) == b->file_offset && a->file_end == b->file_end;
    }
    return true;
}

static void vma_merge_around(int i)
{
    if (i + 1 < vma_count && vma_mergeable(&vmas[i], &vmas[i + 1])) {
        vmas[i].end = vmas[i + 1].end;
        vma_remove_at(i + 1);
    }
    if (i > 0 && vma_mergeable(&vmas[i - 1], &vmas[i])) {
        vmas[i - 1].end = vmas[i].end;
        vma_remove_at(i);
    }
}

/* Splits so that a VMA boundary lies at addr (if a VMA spans it). Needs one free slot. */
static void vma_split_at(u64 addr)
{
    int i = vma_lower_bound(addr);
    if (i >= vma_count || vmas[i].start >= addr) {
        return;
    }
    struct vma right = vmas[i];
    right.start = addr;
    if (right.flags & VMA_IMAGE) {
        right.file_offset += addr - vmas[i].start;
    }
    vmas[i].end = addr;
    vma_insert_at(i + 1, &right);
}

/* Removes [start, end) from the VMA list (freeing its pages). Needs up to two free slots. */
static void vma_cut(u64 start, u64 end)
{
    vma_split_at(start);
    vma_split_at(end);
    int i = vma_lower_bound(start);
    while (i < vma_count && vmas[i].start < end) {
        vma_remove_at(i);
    }
    unmap_pages(start, end);
}

static bool range_free(u64 start, u64 end)
{
    int i = vma_lower_bound(start);
    return i >= vma_count || vmas[i].start >= end;
}

/* Highest free gap of len bytes ending at or below top; 0 when none. */
static u64 find_gap(u64 len, u64 top)
{
    u64 hi = top;
    int i = vma_lower_bound(top);   /* first VMA ending above top */
    if (i < vma_count && vmas[i].start < top) {
        hi = vmas[i].start;
    }
    for (int k = i - 1;; k--) {
        u64 lo = k >= 0 ? vmas[k].end : MMAP_MIN_ADDR;
        if (hi >= lo && hi - lo >= len) {
            return hi - len;
        }
        if (k < 0) {
            return 0;
        }
        hi = vmas[k].start;
    }
}

static bool user_range_valid(u64 addr, u64 len)
{
    return len != 0 && addr >= MMAP_MIN_ADDR && addr < USER_TOP && len <= USER_TOP - addr;
}

static long vm_insert(u64 addr, u64 len, u32 flags, u64 file_offset, u64 file_end)
{
    if (!vma_reserve(3)) {
        return -ENOMEM;
    }
    vma_cut(addr, addr + len);
    struct vma v = { addr, addr + len, flags, file_offset, file_end };
    int i = vma_lower_bound(addr);
    vma_insert_at(i, &v);
    vma_merge_around(i);
    return 0;
}

long vm_map(u64 addr, u64 len, u32 flags, bool fixed, bool noreplace, u64 *out)
{
    if (len == 0) {
        return -EINVAL;
    }
    len = ALIGN_UP(len, PAGE_SIZE);
    if (len == 0 || len > USER_TOP) {
        return -ENOMEM;
    }
    if (fixed || noreplace) {
        if ((addr & (PAGE_SIZE - 1)) != 0) {
            return -EINVAL;
        }
        if (!user_range_valid(addr, len)) {
            return -ENOMEM;
        }
        if (noreplace && !range_free(addr, addr + len)) {
            return -EEXIST;
        }
    } else {
        addr = ALIGN_DOWN(addr, PAGE_SIZE);
        if (addr == 0 || !user_range_valid(addr, len) || !range_free(addr, addr + len)) {
            addr = find_gap(len, MMAP_TOP);
            if (addr == 0) {
                return -ENOMEM;
            }
        }
    }
    long r = vm_insert(addr, len, flags, 0, 0);
    if (r < 0) {
        return r;
    }
    *out = addr;
    return 0;
}

long vm_map_image(u64 addr, u64 len, u32 flags, u64 file_offset, u64 file_end)
{
    if (!user_range_valid(addr, len) || (addr & (PAGE_SIZE - 1)) || (len & (PAGE_SIZE - 1)) ||
        (file_offset & (PAGE_SIZE - 1))) {
        return -EINVAL;
    }
    return vm_insert(addr, len, flags | VMA_IMAGE, file_offset, file_end);
}

long vm_unmap(u64 addr, u64 len)
{
    if ((addr & (PAGE_SIZE - 1)) != 0 || len == 0) {
        return -EINVAL;
    }
    len = ALIGN_UP(len, PAGE_SIZE);
    if (addr >= USER_TOP || len > USER_TOP - addr) {
        return -EINVAL;
    }
    if (!vma_reserve(2)) {
        return -ENOMEM;
    }
    vma_cut(addr, addr + len);
    return 0;
}

long vm_protect(u64 addr, u64 len, u32 prot)
{
    if ((addr & (PAGE_SIZE - 1)) != 0) {
        return -EINVAL;
    }
    len = ALIGN_UP(len, PAGE_SIZE);
    if (len == 0) {
        return 0;
    }
    if (addr >= USER_TOP || len > USER_TOP - addr) {
        return -ENOMEM;
    }
    u64 end = addr + len;
    /* the whole range must be mapped */
    int i = vma_lower_bound(addr);
    u64 at = addr;
    for (int k = i; at < end; k++) {
        if (k >= vma_count || vmas[k].start > at) {
            return -ENOMEM;
        }
        at = vmas[k].end;
    }
    if (!vma_reserve(2)) {
        return -ENOMEM;
    }
    vma_split_at(addr);
    vma_split_at(end);
    for (int k = vma_lower_bound(addr); k < vma_count && vmas[k].start < end; k++) {
        vmas[k].flags = (vmas[k].flags & ~(VMA_READ | VMA_WRITE | VMA_EXEC)) | prot;
        protect_pages(vmas[k].start, vmas[k].end, vmas[k].flags);
    }
    for (int k = vma_lower_bound(addr); k < vma_count && vmas[k].start < end;) {
        int before = vma_count;
        vma_merge_around(k);
        if (vma_count == before) {
            k++;
        }
    }
    return 0;
}

long vm_discard(u64 addr, u64 len)
{
    if ((addr & (PAGE_SIZE - 1)) != 0) {
        return -EINVAL;
    }
    len = ALIGN_UP(len, PAGE_SIZE);
    if (addr >= USER_TOP || len > USER_TOP - addr) {
        return -EINVAL;
    }
    u64 end = addr + len;
    for (int k = vma_lower_bound(addr); k < vma_count && vmas[k].start < end; k++) {
        u64 s = MAX(addr, vmas[k].start), e = MIN(end, vmas[k].end);
        unmap_pages(s, e);
    }
    return 0;
}

/* Moves the frames of [old, old + len) to new (both page aligned, the destination free of frames). */
static bool move_pages(u64 old, u64 new, u64 len)
{
    for (u64 off = 0; off < len; off += PAGE_SIZE) {
        u64 *src = pte_walk(old + off, false);
        if (src == NULL || (*src & PTE_FRAME) == 0) {
            continue;
        }
        u64 *dst = pte_walk(new + off, true);
        if (dst == NULL) {
            return false;
        }
        *dst = *src;
        *src = 0;
        invlpg(old + off);
        invlpg(new + off);
    }
    return true;
}

long vm_remap(u64 old, u64 old_len, u64 new_len, int flags, u64 new_addr, u64 *out)
{
    if ((old & (PAGE_SIZE - 1)) || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED))) {
        return -EINVAL;
    }
    if ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE)) {
        return -EINVAL;
    }
    old_len = ALIGN_UP(old_len, PAGE_SIZE);
    new_len = ALIGN_UP(new_len, PAGE_SIZE);
    if (new_len == 0 || old_len == 0 || !user_range_valid(old, old_len)) {
        return -EINVAL;
    }
    const struct vma *v = vm_find(old);
    if (v == NULL || v->end < old + old_len) {
        return -EFAULT;
    }
    struct vma orig = *v;
    if (flags & MREMAP_FIXED) {
        if ((new_addr & (PAGE_SIZE - 1)) || !user_range_valid(new_addr, new_len) ||
            (new_addr < old + old_len && old < new_addr + new_len)) {
            return -EINVAL;
        }
    } else if (new_len <= old_len) {
        if (new_len < old_len) {
            long r = vm_unmap(old + new_len, old_len - new_len);
            if (r < 0) {
                return r;
            }
        }
        *out = old;
        return 0;
    } else if (orig.end >= old + old_len && range_free(old + old_len, old + new_len) &&
               user_range_valid(old, new_len)) {
        /* grow in place */
        long r;
        if (orig.flags & VMA_IMAGE) {
            r = vm_map_image(old + old_len, new_len - old_len, orig.flags & ~VMA_IMAGE,
                             orig.file_offset + (old + old_len - orig.start), orig.file_end);
        } else {
            r = vm_insert(old + old_len, new_len - old_len, orig.flags, 0, 0);
        }
        if (r < 0) {
            return r;
        }
        *out = old;
        return 0;
    } else if (!(flags & MREMAP_MAYMOVE)) {
        return -ENOMEM;
    }
    if (!(flags & MREMAP_FIXED)) {
        new_addr = find_gap(new_len, MMAP_TOP);
        if (new_addr == 0) {
            return -ENOMEM;
        }
    }
    u64 file_offset = orig.file_offset + (old - orig.start);
    long r = vm_insert(new_addr, new_len, orig.flags & ~VMA_IMAGE, 0, 0);
    if (r < 0) {
        return r;
    }
    if (orig.flags & VMA_IMAGE) {
        int i = vma_lower_bound(new_addr);
        vmas[i].flags |= VMA_IMAGE;
        vmas[i].file_offset = file_offset;
        vmas[i].file_end = orig.file_end - old + new_addr;
    }
    if (!move_pages(old, new_addr, MIN(old_len, new_len))) {
        return -ENOMEM;
    }
    vm_unmap(old, old_len);
    *out = new_addr;
    return 0;
}

/* ---- faults ------------------------------------------------------------------------------------------------------- */

static bool oom_reported;

static void out_of_memory(void)
{
    if (!oom_reported) {
        oom_reported = true;
        const pv_boot_info *bi = pv_boot_info_get();
        kprintf("paravirt-linux: out of guest memory (%lu MiB): run with a larger --memory\n",
                (unsigned long)(bi->memory_size >> 20));
    }
    kill_process_by_signal(SIGKILL, 0, current && current->regs ? current->regs->rip : 0, current ? current->regs : NULL);
}

/* Gives the page at va (inside v) its first frame. */
static bool populate(const struct vma *v, u64 va, u64 *pte)
{
    if (v->flags & VMA_IMAGE) {
        u64 file_pos = v->file_offset + (va - v->start);
        if (va + PAGE_SIZE <= v->file_end && file_pos + PAGE_SIZE <= ALIGN_UP(image_size, PAGE_SIZE)) {
            /* a whole page of the file: share the boot module's frame (copied on the first write) */
            *pte = (image_phys + file_pos) | leaf_flags(v->flags, false);
            return true;
        }
        u64 phys = pmm_alloc();
        if (phys == 0) {
            out_of_memory();
        }
        if (va < v->file_end && file_pos < image_size) {
            u64 n = MIN(v->file_end - va, image_size - file_pos);
            n = MIN(n, PAGE_SIZE);
            memcpy(phys_to_virt(phys), phys_to_virt(image_phys + file_pos), n);
        }
        *pte = phys | leaf_flags(v->flags, true);
        return true;
    }
    u64 phys = pmm_alloc();
    if (phys == 0) {
        out_of_memory();
    }
    *pte = phys | leaf_flags(v->flags, true);
    return true;
}

/* Resolves a fault at addr with x86 error code bits; false when the access is not allowed (a SIGSEGV). */
bool vm_handle_fault(u64 addr, u64 error)
{
    if (addr >= USER_TOP) {
        return false;
    }
    const struct vma *v = vm_find(addr);
    if (v == NULL) {
        return false;
    }
    bool write = (error & PF_WRITE) != 0;
    bool fetch = (error & PF_FETCH) != 0;
    if ((v->flags & (VMA_READ | VMA_WRITE | VMA_EXEC)) == 0) {
        return false;
    }
    if (write && !(v->flags & VMA_WRITE)) {
        return false;
    }
    if (fetch && !(v->flags & VMA_EXEC) && cpu_has_nx) {
        return false;
    }
    u64 va = ALIGN_DOWN(addr, PAGE_SIZE);
    u64 *pte = pte_walk(va, true);
    if (pte == NULL) {
        out_of_memory();
    }
    if ((*pte & PTE_FRAME) == 0) {
        populate(v, va, pte);
    }
    if (write && !(*pte & PTE_OWNED)) {
        /* copy on write: a page of the application file */
        u64 phys = pmm_alloc();
        if (phys == 0) {
            out_of_memory();
        }
        memcpy(phys_to_virt(phys), phys_to_virt(*pte & PTE_ADDR), PAGE_SIZE);
        *pte = phys | leaf_flags(v->flags, true);
    } else {
        *pte = (*pte & PTE_ADDR) | leaf_flags(v->flags, (*pte & PTE_OWNED) != 0);
    }
    invlpg(va);
    return true;
}

/* ---- brk ---------------------------------------------------------------------------------------------------------- */

void vm_set_brk_base(u64 base)
{
    vm_brk_start = vm_brk_end = brk_mapped = ALIGN_UP(base, PAGE_SIZE);
}

long vm_brk(u64 want)
{
    if (want < vm_brk_start || want >= USER_TOP) {
        return (long)vm_brk_end;
    }
    u64 new_mapped = ALIGN_UP(want, PAGE_SIZE);
    if (new_mapped > brk_mapped) {
        if (!range_free(brk_mapped, new_mapped)) {
            return (long)vm_brk_end;
        }
        if (vm_insert(brk_mapped, new_mapped - brk_mapped, VMA_READ | VMA_WRITE | VMA_HEAP, 0, 0) < 0) {
            return (long)vm_brk_end;
        }
    } else if (new_mapped < brk_mapped) {
        vm_unmap(new_mapped, brk_mapped - new_mapped);
    }
    brk_mapped = new_mapped;
    vm_brk_end = want;
    return (long)want;
}

/* ---- user memory access --------------------------------------------------------------------------------------------- */

/* Checks that [addr, addr + len) is user memory the application may read (or write) and gives every page a frame
 * with the needed access, so that the copy below cannot fault. */
static long uaccess_prepare(u64 addr, u64 len, bool write)
{
    if (len == 0) {
        return 0;
    }
    if (addr >= USER_TOP || len > USER_TOP - addr) {
        return -EFAULT;
    }
    u64 end = addr + len;
    const struct vma *v = NULL;
    for (u64 va = ALIGN_DOWN(addr, PAGE_SIZE); va < end; va += PAGE_SIZE) {
        if (v == NULL || va >= v->end) {
            v = vm_find(va);
            if (v == NULL) {
                return -EFAULT;
            }
        }
        if ((v->flags & (VMA_READ | VMA_WRITE | VMA_EXEC)) == 0 || (write && !(v->flags & VMA_WRITE))) {
            return -EFAULT;
        }
        u64 *pte = pte_walk(va, false);
        if (pte != NULL && (*pte & PTE_P) && (!write || (*pte & PTE_W))) {
            continue;
        }
        if (!vm_handle_fault(va, write ? PF_WRITE | PF_USER : PF_USER)) {
            return -EFAULT;
        }
        v = NULL; /* the VMA array may not move here, but stay safe */
    }
    return 0;
}

bool user_range_ok(u64 addr, u64 len)
{
    return len == 0 || (addr < USER_TOP && len <= USER_TOP - addr);
}

long copy_from_user(void *dst, u64 src, u64 len)
{
    long r = uaccess_prepare(src, len, false);
    if (r < 0) {
        return r;
    }
    memcpy(dst, (const void *)(uintptr_t)src, len);
    return 0;
}

long copy_to_user(u64 dst, const void *src, u64 len)
{
    long r = uaccess_prepare(dst, len, true);
    if (r < 0) {
        return r;
    }
    memcpy((void *)(uintptr_t)dst, src, len);
    return 0;
}

long clear_user(u64 dst, u64 len)
{
    long r = uaccess_prepare(dst, len, true);
    if (r < 0) {
        return r;
    }
    memset((void *)(uintptr_t)dst, 0, len);
    return 0;
}

long user_strncpy(char *dst, u64 src, u64 cap)
{
    for (u64 i = 0; i < cap; i++) {
        if ((i == 0 || ((src + i) & (PAGE_SIZE - 1)) == 0) && uaccess_prepare(src + i, 1, false) < 0) {
            return -EFAULT;
        }
        char c = *(const volatile char *)(uintptr_t)(src + i);
        dst[i] = c;
        if (c == 0) {
            return (long)i;
        }
    }
    return -ENAMETOOLONG;
}
