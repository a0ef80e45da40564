/*
 * paravirt/ring.h: the guest (front-end) half of a shared request/response ring, Xen io/ring.h style.
 *
 * A ring is a pv_ring_header followed by 2^order fixed-size slots in guest memory, shared with the host by an
 * attach hypercall. Indices are free-running u32 (slot = index & (size - 1)). The guest writes requests at
 * req_prod_pvt and publishes them by storing req_prod; the host answers in the same slots, in completion order,
 * and publishes rsp_prod. A slot is reusable once its response was consumed, so at most
 * size - (req_prod_pvt - rsp_cons) requests can be queued.
 *
 * Event suppression: after publishing, the guest rings the doorbell only when req_prod passed the host's
 * req_event; before sleeping, the guest stores rsp_event = rsp_cons + 1 and re-checks, so a response that raced
 * with that store is not missed (RING_FINAL_CHECK_FOR_RESPONSES).
 *
 * Barriers: the host runs on another thread (or CPU), so the slot contents must be visible before the index
 * (release) and read after it (acquire); the store to an event index and the re-read of a producer index need a
 * full fence (store->load ordering, which x86 does not give for free).
 */
#ifndef PARAVIRT_RING_H
#define PARAVIRT_RING_H

#include <stddef.h>
#include <stdint.h>

#include "abi.h"

#ifndef __ASSEMBLER__

#define pv_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define pv_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define pv_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

/* The guest's private view of one ring. */
typedef struct pv_ring {
    volatile pv_ring_header *sring; /* the shared header; slots follow at +PV_RING_HEADER_SIZE */
    uint8_t *slots;
    uint32_t size;                  /* 2^order slots */
    uint32_t slot_size;             /* bytes per slot (PV_BLOCK_SLOT_SIZE, PV_NET_SLOT_SIZE) */
    uint32_t req_prod_pvt;          /* next request index (not yet published) */
    uint32_t rsp_cons;              /* next response to consume */
} pv_ring;

/* Bytes a ring of 2^order slots of slot_size bytes occupies. */
static inline size_t pv_ring_bytes(unsigned order, uint32_t slot_size)
{
    return PV_RING_HEADER_SIZE + ((size_t)slot_size << order);
}

/* Initializes the shared ring at `mem` (zeroed, page aligned, pv_ring_bytes(order, slot_size) long) and the
 * private view (SHARED_RING_INIT + FRONT_RING_INIT): both event indices start at 1 so the first request and the
 * first response are signalled. */
static inline void pv_ring_init(pv_ring *r, void *mem, unsigned order, uint32_t slot_size)
{
    volatile pv_ring_header *h = (volatile pv_ring_header *)mem;
    h->req_prod = 0;
    h->rsp_prod = 0;
    h->req_event = 1;
    h->rsp_event = 1;
    r->sring = h;
    r->slots = (uint8_t *)mem + PV_RING_HEADER_SIZE;
    r->size = 1u << order;
    r->slot_size = slot_size;
    r->req_prod_pvt = 0;
    r->rsp_cons = 0;
}

/* The slot of index `idx` (request or response). */
static inline void *pv_ring_slot(const pv_ring *r, uint32_t idx)
{
    return r->slots + (size_t)(idx & (r->size - 1)) * r->slot_size;
}

/* Requests that can still be queued (slots whose responses were consumed). */
static inline uint32_t pv_ring_free_requests(const pv_ring *r)
{
    return r->size - (r->req_prod_pvt - r->rsp_cons);
}

/* Requests published or queued whose responses were not consumed yet. */
static inline uint32_t pv_ring_outstanding(const pv_ring *r)
{
    return r->req_prod_pvt - r->rsp_cons;
}

/* The slot for the next request; the caller fills it and then calls pv_ring_queue_request. Only valid while
 * pv_ring_free_requests(r) > 0. */
static inline void *pv_ring_next_request(const pv_ring *r)
{
    return pv_ring_slot(r, r->req_prod_pvt);
}

static inline void pv_ring_queue_request(pv_ring *r)
{
    r->req_prod_pvt++;
}

/* RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publishes the queued requests; returns 1 when the host asked to be told
 * (req_prod passed req_event), i.e. when the caller must ring the doorbell. */
static inline int pv_ring_push_requests(pv_ring *r)
{
    uint32_t old = r->sring->req_prod;
    uint32_t new_prod = r->req_prod_pvt;
    if (old == new_prod) {
        return 0;
    }
    pv_wmb(); /* the host sees the requests before the index */
    r->sring->req_prod = new_prod;
    pv_mb(); /* the index is visible before req_event is read */
    uint32_t event = r->sring->req_event;
    return (uint32_t)(new_prod - event) < (uint32_t)(new_prod - old);
}

/* Responses the host published that were not consumed yet (the read of rsp_prod is ordered before the reads of
 * the slots). */
static inline uint32_t pv_ring_unconsumed_responses(const pv_ring *r)
{
    uint32_t n = r->sring->rsp_prod - r->rsp_cons;
    pv_rmb();
    return n;
}

/* The response at rsp_cons; only valid while pv_ring_unconsumed_responses(r) > 0. Copy it, then call
 * pv_ring_consume_response (the slot is free for a new request after that). */
static inline const void *pv_ring_next_response(const pv_ring *r)
{
    return pv_ring_slot(r, r->rsp_cons);
}

static inline void pv_ring_consume_response(pv_ring *r)
{
    r->rsp_cons++;
}

/* RING_FINAL_CHECK_FOR_RESPONSES: before sleeping, asks for an event on the next response and re-checks, so a
 * response published between the last check and the store is seen. Returns the unconsumed count. */
static inline uint32_t pv_ring_final_check_for_responses(pv_ring *r)
{
    uint32_t n = pv_ring_unconsumed_responses(r);
    if (n != 0) {
        return n;
    }
    r->sring->rsp_event = r->rsp_cons + 1;
    pv_mb();
    return pv_ring_unconsumed_responses(r);
}

/* Sanity check against a confused host: more responses than requests. */
static inline int pv_ring_responses_sane(const pv_ring *r)
{
    return (uint32_t)(r->sring->rsp_prod - r->rsp_cons) <= (uint32_t)(r->req_prod_pvt - r->rsp_cons);
}

#endif /* __ASSEMBLER__ */

#endif /* PARAVIRT_RING_H */
