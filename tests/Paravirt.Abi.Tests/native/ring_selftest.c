/*
 * ring_selftest.c: host-native checks of the guest's ring helpers (paravirt/ring.h) and the command-line parser
 * (runtime/cmdline.c), compiled with the host gcc. The end-to-end tests never run long enough for the free-running
 * u32 indices to wrap, so the wrap is forced here, against a back-end that follows the host's SharedRing rules
 * (consume, answer in the slot, publish rsp_prod and notify when it passed rsp_event, arm req_event = cons + 1).
 * Prints "ring: N checks, 0 failed" and exits 0 on success.
 */
#include <stdio.h>
#include <string.h>

#include <paravirt/paravirt.h>

#define SELFTEST_PRINTF printf
#include "selftest.h"

/* ---- a back-end with the host's rules ---- */
typedef struct backend {
    pv_ring_header *s;
    uint8_t *slots;
    uint32_t size, req_cons, rsp_prod_pvt;
} backend;

typedef struct { uint64_t id; uint64_t value; uint8_t pad[48]; } slot64;

/* Answers every pending request (value * 2), publishes; returns 1 when the guest asked for an event. */
static int backend_process(backend *b)
{
    uint32_t prod = b->s->req_prod;
    while (b->req_cons != prod) {
        slot64 *sl = (slot64 *)(b->slots + (size_t)(b->req_cons & (b->size - 1)) * sizeof(slot64));
        slot64 req = *sl;
        sl->id = req.id;
        sl->value = req.value * 2;
        b->req_cons++;
        b->rsp_prod_pvt++;
    }
    uint32_t old = b->s->rsp_prod, next = b->rsp_prod_pvt;
    b->s->rsp_prod = next;
    b->s->req_event = b->req_cons + 1; /* FinalCheckForRequests: idle, wake me on the next request */
    return (uint32_t)(next - b->s->rsp_event) < (uint32_t)(next - old);
}

static void ring_checks(uint32_t start)
{
    static uint8_t mem[4096] __attribute__((aligned(4096)));
    memset(mem, 0, sizeof(mem));
    pv_ring r;
    pv_ring_init(&r, mem, 2, sizeof(slot64));
    CHECK(r.size == 4 && r.sring->req_event == 1 && r.sring->rsp_event == 1);
    CHECK(pv_ring_bytes(2, 64) == 64 + 256);
    /* Start near the u32 wrap, as if the ring had run for a long time. */
    r.sring->req_prod = r.sring->rsp_prod = start;
    r.sring->req_event = r.sring->rsp_event = start + 1;
    r.req_prod_pvt = r.rsp_cons = start;
    backend b = { (pv_ring_header *)mem, mem + PV_RING_HEADER_SIZE, 4, start, start };

    uint64_t next_value = 1, expect_value = 1;
    int notifies = 0, pushes = 0;
    for (int round = 0; round < 40; round++) {
        /* Queue 1..4 requests (all free slots at most). */
        uint32_t want = 1 + (uint32_t)(round % 4);
        CHECK(pv_ring_free_requests(&r) == 4);
        for (uint32_t i = 0; i < want; i++) {
            slot64 *req = pv_ring_next_request(&r);
            req->id = next_value;
            req->value = next_value++;
            pv_ring_queue_request(&r);
        }
        CHECK(pv_ring_free_requests(&r) == 4 - want);
        CHECK(pv_ring_outstanding(&r) == want);
        int notify = pv_ring_push_requests(&r);
        pushes++;
        /* The back-end armed req_event = cons + 1 when it went idle, so every first push after idle notifies. */
        CHECK(notify == 1);
        notifies += notify;
        /* A push with nothing new never notifies. */
        CHECK(pv_ring_push_requests(&r) == 0);

        CHECK(pv_ring_final_check_for_responses(&r) == 0); /* nothing yet: arms rsp_event */
        CHECK(r.sring->rsp_event == r.rsp_cons + 1);
        CHECK(backend_process(&b) == 1);                      /* so the back-end notifies */
        CHECK(pv_ring_responses_sane(&r));
        CHECK(pv_ring_unconsumed_responses(&r) == want);
        while (pv_ring_unconsumed_responses(&r) != 0) {
            const slot64 *rsp = pv_ring_next_response(&r);
            CHECK(rsp->id == expect_value && rsp->value == expect_value * 2);
            expect_value++;
            pv_ring_consume_response(&r);
        }
        CHECK(pv_ring_outstanding(&r) == 0);
    }
    CHECK(notifies == pushes);
    CHECK((uint32_t)(r.req_prod_pvt - start) == (uint32_t)(next_value - 1)); /* the indices wrapped (start is near 2^32) */

    /* Back-end busy (did not re-arm req_event): a second batch does not ring the doorbell again. */
    for (int i = 0; i < 2; i++) {
        slot64 *req = pv_ring_next_request(&r);
        req->id = req->value = next_value++;
        pv_ring_queue_request(&r);
        CHECK(pv_ring_push_requests(&r) == (i == 0));
    }
    /* No response asked for (rsp_event behind): the back-end does not notify. */
    r.sring->rsp_event = r.rsp_cons; /* stale: the guest is not waiting */
    CHECK(backend_process(&b) == 0);
    CHECK(pv_ring_unconsumed_responses(&r) == 2);
    r.rsp_cons += 2;
    /* A lying back-end that publishes more responses than requests is caught. */
    r.sring->rsp_prod = r.rsp_cons + 1;
    CHECK(!pv_ring_responses_sane(&r));
}

/* ---- command line ---- */
static pv_boot_info boot;
const pv_boot_info *pv_boot_info_get(void)
{
    return &boot;
}

static void set_cmdline(const char *s)
{
    boot.command_line = (uint64_t)(uintptr_t)s;
    boot.command_line_length = (uint32_t)strlen(s);
}

static void cmdline_checks(void)
{
    char v[16];
    set_cmdline("role=ping  rounds=200 seed=0x1F quiet rounds2=9 x= big=99999999999999999999");
    CHECK(pv_cmdline_get("role", v, sizeof(v)) == 4 && strcmp(v, "ping") == 0);
    CHECK(pv_cmdline_u64("rounds", 1) == 200);
    CHECK(pv_cmdline_u64("seed", 1) == 0x1F);
    CHECK(pv_cmdline_get("quiet", v, sizeof(v)) == 0 && v[0] == 0);
    CHECK(pv_cmdline_get("round", v, sizeof(v)) == PV_STATUS_NOT_FOUND); /* a prefix is not a key */
    CHECK(pv_cmdline_get("x", v, sizeof(v)) == 0);
    CHECK(pv_cmdline_u64("x", 5) == 5);                                  /* empty: the fallback */
    CHECK(pv_cmdline_u64("missing", 7) == 7);
    CHECK(pv_cmdline_u64("role", 3) == 3);                               /* not a number */
    CHECK(pv_cmdline_u64("big", 4) == 4);                                /* overflows u64 */
    CHECK(pv_cmdline_get("role", v, 3) == 4 && strcmp(v, "pi") == 0);   /* truncated, full length returned */
    set_cmdline("");
    CHECK(pv_cmdline_get("role", v, sizeof(v)) == PV_STATUS_NOT_FOUND);
    char nul_inside[] = "a=1\0b=2";
    boot.command_line = (uint64_t)(uintptr_t)nul_inside;
    boot.command_line_length = sizeof(nul_inside) - 1;
    CHECK(pv_cmdline_u64("a", 0) == 1);
    CHECK(pv_cmdline_get("b", v, sizeof(v)) == PV_STATUS_NOT_FOUND);   /* the line ends at a NUL */
}

int main(void)
{
    ring_checks(0);
    ring_checks(0xFFFFFFF0u);
    ring_checks(0x7FFFFFFEu);
    cmdline_checks();
    printf("ring: %d checks, %d failed\n", checks, failed);
    return failed == 0 ? 0 : 1;
}
