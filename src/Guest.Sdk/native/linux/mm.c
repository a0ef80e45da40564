/*
 * mm.c: guest-physical frames (a bitmap over [boot_info.heap_start, memory_size)) and the kernel heap.
 *
 * Every frame is handed out zeroed (page tables and fresh application pages need zeros; zeroing at allocation is
 * one place to get it right). The kernel heap is size-class slabs for small objects and whole contiguous frames for
 * large ones; every block starts with a 16-byte header that says which.
 */
#include "kernel.h"

static u64 *pmm_bitmap;      /* bit set = frame in use */
static u64 pmm_base;         /* physical address of frame 0 */
static u64 pmm_frames;
static u64 pmm_free_count;
static u64 pmm_hint;         /* next-fit start (frame index) */

static inline bool bit_get(u64 i) { return (pmm_bitmap[i / 64] >> (i % 64)) & 1; }
static inline void bit_set(u64 i) { pmm_bitmap[i / 64] |= 1ull << (i % 64); }
static inline void bit_clear(u64 i) { pmm_bitmap[i / 64] &= ~(1ull << (i % 64)); }

void pmm_init(u64 start, u64 end)
{
    start = ALIGN_UP(start, PAGE_SIZE);
    end = ALIGN_DOWN(end, PAGE_SIZE);
    if (end <= start + 16 * PAGE_SIZE) {
        panic("no guest memory left for the library OS (heap 0x%lx-0x%lx)", start, end);
    }
    u64 frames = (end - start) / PAGE_SIZE;
    u64 bitmap_bytes = ALIGN_UP((frames + 63) / 64 * 8, PAGE_SIZE);
    /* The bitmap takes the first frames of the area; the early page tables map the first GiB, which covers it. */
    pmm_bitmap = phys_to_virt(start);
    memset(pmm_bitmap, 0, bitmap_bytes);
    pmm_base = start;
    pmm_frames = frames;
    pmm_free_count = frames;
    u64 used = bitmap_bytes / PAGE_SIZE;
    for (u64 i = 0; i < used; i++) {
        bit_set(i);
    }
    /* frames past the end of the last bitmap word do not exist */
    for (u64 i = frames; i < (frames + 63) / 64 * 64; i++) {
        bit_set(i);
    }
    pmm_free_count -= used;
    pmm_hint = used;
}

u64 pmm_free_pages(void) { return pmm_free_count; }
u64 pmm_total_pages(void) { return pmm_frames; }

static void zero_frame(u64 phys, u64 count)
{
    void *p = phys_to_virt(phys);
    u64 n = count * PAGE_SIZE / 8;
    __asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(0ull) : "memory");
}

u64 pmm_alloc(void)
{
    if (pmm_free_count == 0) {
        return 0;
    }
    u64 words = (pmm_frames + 63) / 64;
    u64 w = pmm_hint / 64;
    for (u64 k = 0; k <= words; k++, w++) {
        if (w >= words) {
            w = 0;
        }
        u64 v = pmm_bitmap[w];
        if (v != ~0ull) {
            u64 bit = (u64)__builtin_ctzll(~v);
            u64 i = w * 64 + bit;
            bit_set(i);
            pmm_free_count--;
            pmm_hint = i + 1;
            u64 phys = pmm_base + i * PAGE_SIZE;
            zero_frame(phys, 1);
            return phys;
        }
    }
    return 0;
}

u64 pmm_alloc_contig(u64 count)
{
    if (count == 0 || count > pmm_free_count) {
        return 0;
    }
    if (count == 1) {
        return pmm_alloc();
    }
    u64 run = 0;
    for (u64 i = 0; i < pmm_frames; i++) {
        if ((i % 64) == 0 && run == 0 && i + 64 <= pmm_frames && pmm_bitmap[i / 64] == ~0ull) {
            i += 63;
            continue;
        }
        if (bit_get(i)) {
            run = 0;
            continue;
        }
        if (++run == count) {
            u64 first = i + 1 - count;
            for (u64 j = first; j <= i; j++) {
                bit_set(j);
            }
            pmm_free_count -= count;
            u64 phys = pmm_base + first * PAGE_SIZE;
            zero_frame(phys, count);
            return phys;
        }
    }
    return 0;
}

void pmm_free(u64 phys)
{
    if (phys < pmm_base || (phys & (PAGE_SIZE - 1)) != 0) {
        panic("pmm_free: 0x%lx is not a frame of the heap", phys);
    }
    u64 i = (phys - pmm_base) / PAGE_SIZE;
    if (i >= pmm_frames || !bit_get(i)) {
        panic("pmm_free: frame 0x%lx is not allocated", phys);
    }
    bit_clear(i);
    pmm_free_count++;
    if (i < pmm_hint) {
        pmm_hint = i;
    }
}

void pmm_free_contig(u64 phys, u64 count)
{
    for (u64 k = 0; k < count; k++) {
        pmm_free(phys + k * PAGE_SIZE);
    }
}

/* Frames of the heap above pmm_base belong to the allocator; the boot modules and the library OS lie below. */
bool pmm_owns(u64 phys)
{
    return phys >= pmm_base && phys < pmm_base + pmm_frames * PAGE_SIZE;
}

/* ---- kernel heap ------------------------------------------------------------------------------------------------ */

#define KM_MAGIC 0x4b4d414cu
#define KM_CLASSES 8   /* 32 64 128 256 512 1024 2048 4096 (block sizes, header included) */

struct km_header {
    u32 magic;
    u32 cls;           /* class index, or 0xffffffff for a large block */
    u64 pages;         /* large blocks: frames */
};

struct km_free {
    struct km_free *next;
};

static struct km_free *km_free_lists[KM_CLASSES];

static u64 km_class_size(u32 cls) { return 32ull << cls; }

void *kmalloc(u64 size)
{
    if (size > (1ull << 30)) {
        return NULL;
    }
    u64 need = size + sizeof(struct km_header);
    for (u32 cls = 0; cls < KM_CLASSES; cls++) {
        u64 bs = km_class_size(cls);
        if (need > bs) {
            continue;
        }
        if (km_free_lists[cls] == NULL) {
            u64 phys = pmm_alloc();
            if (phys == 0) {
                return NULL;
            }
            u8 *page = phys_to_virt(phys);
            for (u64 off = 0; off + bs <= PAGE_SIZE; off += bs) {
                struct km_free *f = (struct km_free *)(page + off);
                f->next = km_free_lists[cls];
                km_free_lists[cls] = f;
            }
        }
        struct km_free *f = km_free_lists[cls];
        km_free_lists[cls] = f->next;
        memset(f, 0, bs);
        struct km_header *h = (struct km_header *)f;
        h->magic = KM_MAGIC;
        h->cls = cls;
        return h + 1;
    }
    u64 pages = ALIGN_UP(need, PAGE_SIZE) / PAGE_SIZE;
    u64 phys = pmm_alloc_contig(pages);
    if (phys == 0) {
        return NULL;
    }
    struct km_header *h = phys_to_virt(phys);
    h->magic = KM_MAGIC;
    h->cls = 0xffffffffu;
    h->pages = pages;
    return h + 1;
}

void kfree(void *p)
{
    if (p == NULL) {
        return;
    }
    struct km_header *h = (struct km_header *)p - 1;
    if (h->magic != KM_MAGIC) {
        panic("kfree: %p is not a kernel heap block", p);
    }
    h->magic = 0;
    if (h->cls == 0xffffffffu) {
        pmm_free_contig(virt_to_phys(h), h->pages);
        return;
    }
    if (h->cls >= KM_CLASSES) {
        panic("kfree: %p has a bad size class", p);
    }
    struct km_free *f = (struct km_free *)h;
    f->next = km_free_lists[h->cls];
    km_free_lists[h->cls] = f;
}
