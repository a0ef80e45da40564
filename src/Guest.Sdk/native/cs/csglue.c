/*
 * csglue.c: the native half of the C# guest runtime (src/Guest.Sdk/cs/CoreLib), linked with the C runtime
 * (start.S, runtime.c, note.c, ...) and the object file the NativeAOT compiler (ILC) made from the guest's
 * assemblies.
 *
 *   main()            start.S calls it after pv_runtime_init(); it sets up the modules ILC emitted (GC static
 *                     bases, eager class constructors, module initializers), then enters the compiler-generated
 *                     __managed__Main (which runs the C# Main) and returns its status to start.S -> pv_exit.
 *   pv_cs_hypercall() one hypercall through the hypercall page, for Paravirt.Guest.Hypercall.
 *   __security_cookie the canary value of the compiler's stack-overrun checks.
 *   pv_cs_alloc()     the managed heap: zeroed, 8-byte aligned memory carved from pv_page_alloc's pages (the
 *                     allocator the drivers use, over [boot_info.heap_start, memory_size - 64 KiB)); never freed
 *                     (no GC). Exhaustion is fatal: pv_panic, exit status 255.
 *   pv_cs_barrier()   a full fence for the C# ring code.
 */
#include <paravirt/paravirt.h>

/* The managed heap takes pages from pv_page_alloc (devices.c), the one allocator of guest memory, so C# objects,
   C drivers and C# drivers' shared rings never overlap. Small objects are carved from 64 KiB chunks; an object of
   16 KiB or more gets pages of its own. */
#define PV_CS_PAGE 4096u
#define PV_CS_CHUNK (64u * 1024u)
#define PV_CS_LARGE (16u * 1024u)

extern int __managed__Main(int argc, char **argv);

/* The stack-buffer-overrun canary the compiler checks in methods with stackalloc (a fixed value: a guest has no
   entropy source at boot, and the check is for bugs, not attackers). A mismatch calls RhpFallbackFailFast. */
uintptr_t __security_cookie = 0x2B992DDFA2320000u;

static uint8_t *pv_cs_chunk_next;
static uint8_t *pv_cs_chunk_end;

long pv_cs_hypercall(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    return pv_hypercall5(code, a1, a2, a3, a4, a5);
}

static void __attribute__((noreturn)) pv_cs_out_of_memory(size_t size)
{
    pv_panic("out of memory: C# allocation of %lu bytes, %lu left on the heap", (unsigned long)size,
             (unsigned long)(pv_page_available() + (size_t)(pv_cs_chunk_end - pv_cs_chunk_next)));
}

void *pv_cs_alloc(size_t size)
{
    size_t rounded = (size + 7u) & ~(size_t)7u;
    if (rounded < size) {
        pv_cs_out_of_memory(size);
    }
    if (rounded <= (size_t)(pv_cs_chunk_end - pv_cs_chunk_next)) {
        void *p = pv_cs_chunk_next;
        pv_cs_chunk_next += rounded;
        return p; /* pv_page_alloc zeroed the chunk */
    }
    if (rounded >= PV_CS_LARGE) {
        void *p = pv_page_alloc((rounded + PV_CS_PAGE - 1) / PV_CS_PAGE);
        if (p == NULL) {
            pv_cs_out_of_memory(size);
        }
        return p;
    }
    uint8_t *chunk = pv_page_alloc(PV_CS_CHUNK / PV_CS_PAGE);
    if (chunk == NULL) {
        pv_cs_out_of_memory(size);
    }
    pv_cs_chunk_next = chunk + rounded;
    pv_cs_chunk_end = chunk + PV_CS_CHUNK;
    return chunk;
}

/* A full memory barrier (and, being a call, a compiler barrier) for the C# ring code. */
void pv_cs_barrier(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* The module headers ILC emits (a pointer per module in section __modules; ld defines the bounds) and the parts
   of their ReadyToRun layout the start-up code reads. */
extern void *__start___modules[] __attribute__((weak));
extern void *__stop___modules[] __attribute__((weak));

#define PV_CS_R2R_SIGNATURE 0x00525452u /* "RTR" */
#define PV_CS_SECTION_GC_STATIC_REGION 201
#define PV_CS_SECTION_EAGER_CCTOR 205
#define PV_CS_SECTION_MODULE_INITIALIZERS 213
#define PV_CS_GC_STATIC_UNINITIALIZED 1u
#define PV_CS_GC_STATIC_PREINITIALIZED 2u

typedef struct pv_cs_r2r_header {
    uint32_t signature;
    uint16_t major, minor;
    uint32_t flags;
    uint16_t section_count;
    uint8_t entry_size;
    uint8_t entry_type;
} pv_cs_r2r_header;

typedef struct pv_cs_r2r_section {
    int32_t id;
    int32_t flags;
    uint8_t *start;
    uint8_t *end;
} pv_cs_r2r_section;

static uint8_t *pv_cs_relptr(const void *at)
{
    return (uint8_t *)at + *(const int32_t *)at;
}

/* GC statics: each entry of the region is a relative pointer to a slot whose first word is a relative pointer to
   the MethodTable of the type's statics object, tagged "uninitialized" (and "preinitialized" when the next word
   points to the field values ILC computed at build time). The slot becomes a pointer to a fresh object of that
   type, as NativeAOT's own start-up does (InitializeStatics); compiled code then reads statics through it. */
static void pv_cs_init_gc_statics(uint8_t *start, uint8_t *end)
{
    for (uint8_t *entry = start; entry + sizeof(int32_t) <= end; entry += sizeof(int32_t)) {
        uint8_t *slot = pv_cs_relptr(entry);
        uintptr_t tagged = (uintptr_t)pv_cs_relptr(slot);
        if ((tagged & PV_CS_GC_STATIC_UNINITIALIZED) == 0) {
            continue;
        }
        const uint8_t *mt = (const uint8_t *)(tagged & ~(uintptr_t)3);
        uint32_t base_size = *(const uint32_t *)(mt + 4);
        uint8_t *obj = pv_cs_alloc(base_size);
        *(const uint8_t **)obj = mt;
        if ((tagged & PV_CS_GC_STATIC_PREINITIALIZED) != 0 && base_size > 2 * sizeof(void *)) {
            memcpy(obj + sizeof(void *), pv_cs_relptr(slot + sizeof(int32_t)), base_size - 2 * sizeof(void *));
        }
        *(uint8_t **)slot = obj;
    }
}

static void pv_cs_run_functions(uint8_t *start, uint8_t *end)
{
    for (uint8_t *entry = start; entry + sizeof(int32_t) <= end; entry += sizeof(int32_t)) {
        ((void (*)(void))pv_cs_relptr(entry))();
    }
}

static void pv_cs_init_modules(void)
{
    if (__start___modules == NULL) {
        return;
    }
    for (void **m = __start___modules; m < __stop___modules; m++) {
        const pv_cs_r2r_header *h = *m;
        if (h == NULL) {
            continue;
        }
        if (h->signature != PV_CS_R2R_SIGNATURE || h->entry_size != sizeof(pv_cs_r2r_section)) {
            pv_panic("C# runtime: unexpected module header (signature %#x, entry size %u)", (unsigned)h->signature,
                     (unsigned)h->entry_size);
        }
        const pv_cs_r2r_section *sections = (const pv_cs_r2r_section *)(h + 1);
        for (unsigned i = 0; i < h->section_count; i++) {
            if (sections[i].id == PV_CS_SECTION_GC_STATIC_REGION) {
                pv_cs_init_gc_statics(sections[i].start, sections[i].end);
            }
        }
        for (unsigned i = 0; i < h->section_count; i++) {
            if (sections[i].id == PV_CS_SECTION_EAGER_CCTOR) {
                pv_cs_run_functions(sections[i].start, sections[i].end);
            }
        }
        for (unsigned i = 0; i < h->section_count; i++) {
            if (sections[i].id == PV_CS_SECTION_MODULE_INITIALIZERS) {
                pv_cs_run_functions(sections[i].start, sections[i].end);
            }
        }
    }
}

int main(void)
{
    pv_cs_init_modules();
    static char name[] = "guest";
    static char *argv[] = { name, NULL };
    return __managed__Main(1, argv);
}
