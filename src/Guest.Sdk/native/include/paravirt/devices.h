/*
 * paravirt/devices.h: guest drivers for the paravirtual console, block and net devices.
 *
 * Discovery: pv_device_find(kind, name, &info) walks the device_info hypercall. Attaching shares memory (a
 * console page, rings) with the host; the attach returns the device's event port, and the guest waits for it
 * with pv_poll(deadline, 1 << port). Data moves through the rings; the doorbell (event_send) is rung only when
 * the host asked for it (ring.h). Everything is single-threaded: one vCPU, no interrupts.
 *
 * Memory: the drivers take their shared pages from pv_page_alloc, a bump allocator over
 * [boot_info.heap_start, boot_info.memory_size - 64 KiB); nothing is ever freed. Device structures are the
 * caller's (static or on the stack).
 *
 * Errors: every function returns a value >= 0 on success or a negative PV_STATUS_* (paravirt/abi.h).
 * Deadlines are absolute pv_clock_monotonic_ns() values; PV_DEADLINE_NEVER waits forever.
 */
#ifndef PARAVIRT_DEVICES_H
#define PARAVIRT_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "ring.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PV_DEADLINE_NEVER UINT64_MAX

/* ---- Discovery, memory, events ----------------------------------------------------------------------------- */

/* Copies device `index`'s description into *info; returns the index or PV_STATUS_NO_DEVICE past the last. */
long pv_device_info_get(uint32_t index, pv_device_info *info);

/* Finds the first device of `kind` whose name is `name` (any name when NULL); fills *info (may be NULL) and
 * returns its index, or PV_STATUS_NO_DEVICE. Needs PV_FEATURE0_DEVICES (PV_STATUS_NOT_IMPLEMENTED otherwise). */
long pv_device_find(uint32_t kind, const char *name, pv_device_info *info);

/* `count` zeroed, page-aligned pages, or NULL when the heap is exhausted. */
void *pv_page_alloc(size_t count);

/* Bytes pv_page_alloc can still hand out. */
size_t pv_page_available(void);

/* The doorbell: tells the host there is new work on the rings bound to `port`. */
long pv_event_send(uint32_t port);

/* ---- Generic device model (ABI 1.1, PV_FEATURE0_DEVICE_MODEL) ---------------------------------------------
 *
 * Every device, built-in or user-defined (type >= PV_DEVICE_TYPE_USER_FIRST), is found, configured and attached the
 * same way: pv_device_lookup finds it by type and name, pv_device_config reads its configuration (a layout its type
 * defines: pv_block_config, pv_net_config, or the user device's own), and pv_device_attach shares one ring or region
 * per queue (pv_queue_desc, in the order the device declares them); the host writes each queue's event port into
 * its descriptor. Rings are driven with paravirt/ring.h; the doorbell of a queue is pv_event_send(queue.port), and
 * the guest waits for a queue with pv_poll(deadline, 1ull << queue.port). */

/* Copies device `index`'s descriptor into *desc; returns the index or PV_STATUS_NO_DEVICE past the last. */
long pv_device_describe(uint32_t index, pv_device_desc *desc);

/* Finds the first device of `type` named `name` (any name when NULL); fills *desc (may be NULL) and returns its
 * index, PV_STATUS_NO_DEVICE, or PV_STATUS_NOT_IMPLEMENTED when the host lacks PV_FEATURE0_DEVICE_MODEL. */
long pv_device_lookup(uint32_t type, const char *name, pv_device_desc *desc);

/* Copies device `index`'s configuration (desc.config_size bytes) into buf (cap >= that); returns the size. */
long pv_device_config(uint32_t index, void *buf, size_t cap);

/* Shares `count` queues (count = desc.queue_count) with device `index`; on success (0) queues[i].port holds each
 * queue's event port. */
long pv_device_attach(uint32_t index, pv_queue_desc *queues, uint32_t count);

/* Detaches device `index`: the host stops using its queues (their memory is the guest's again) and frees its ports. */
long pv_device_reset(uint32_t index);

/* Allocates and initializes a ring of 2^order slots of slot_size bytes (pv_page_alloc) and fills *queue for
 * pv_device_attach; returns 0 or PV_STATUS_NO_MEMORY. */
long pv_device_ring_alloc(pv_ring *ring, pv_queue_desc *queue, unsigned order, uint32_t slot_size);

/* ---- Console --------------------------------------------------------------------------------------------- */

typedef struct pv_cons {
    volatile uint8_t *page; /* the shared PV_CONSOLE_* page */
    uint32_t index;         /* device index */
    uint32_t port;          /* event port */
} pv_cons;

/* The console's input ended and every byte of it was read (the host set PV_CONSOLE_IN_FLAGS_END_OF_INPUT; hosts of
 * ABI 1.1 with PV_FEATURE0_CONSOLE_END_OF_INPUT do). Below every PV_STATUS_* (those are negated errno values, at
 * most 4095), so it never collides with one. */
#define PV_CONS_EOF (-4096L)

/* Attaches console `name` (the first console when NULL). */
long pv_cons_attach(pv_cons *c, const char *name);

/* Writes all of buf into the output ring (waiting for the host to drain it when full) and rings the doorbell
 * once at the end; returns len. */
long pv_cons_write(pv_cons *c, const void *buf, size_t len);

/* Takes up to `cap` available input bytes without blocking; returns the count (0 when none now), or PV_CONS_EOF
 * when the input ended and everything was read. */
long pv_cons_read(pv_cons *c, void *buf, size_t cap);

/* Like pv_cons_read, but waits (poll) until at least one byte arrived, the input ended (PV_CONS_EOF) or the
 * deadline passed (PV_STATUS_TIMED_OUT). */
long pv_cons_read_wait(pv_cons *c, void *buf, size_t cap, uint64_t deadline_ns);

/* Reads one line (without the '\n' or '\r'; NUL-terminated; the excess of a line longer than cap - 1 is
 * dropped) waiting up to the deadline; returns its length, PV_STATUS_TIMED_OUT, or PV_CONS_EOF when the input
 * ended with no line left (a last line without '\n' is returned as a line first). */
long pv_cons_read_line(pv_cons *c, char *line, size_t cap, uint64_t deadline_ns);

/* ---- Block ----------------------------------------------------------------------------------------------- */

typedef struct pv_blk {
    uint32_t index;
    uint32_t port;
    uint64_t sectors;   /* capacity in PV_BLOCK_SECTOR_SIZE sectors */
    uint32_t flags;     /* PV_DEVICE_FLAGS_* */
    int read_only;      /* flags & PV_DEVICE_FLAGS_READ_ONLY */
    pv_ring ring;
    uint64_t next_id;
} pv_blk;

/* One finished request of the async API. */
typedef struct pv_blk_completion {
    uint64_t cookie; /* the caller's cookie given to pv_blk_submit */
    long status;     /* 0 or a negative PV_STATUS_* */
    uint32_t length; /* bytes transferred */
} pv_blk_completion;

/* Opens block device `name` (the first disk when NULL) with the largest ring the host allows. */
long pv_blk_open(pv_blk *d, const char *name);

/* Synchronous I/O: len is a multiple of PV_BLOCK_SECTOR_SIZE (split into PV_BLOCK_MAX_TRANSFER requests,
 * all queued before one doorbell); returns len or the first error. */
long pv_blk_read(pv_blk *d, uint64_t sector, void *buf, size_t len);
long pv_blk_write(pv_blk *d, uint64_t sector, const void *buf, size_t len);
/* Makes every completed write durable (fsync on the host). */
long pv_blk_flush(pv_blk *d);
/* The guest no longer needs the range; reads return zeros afterwards. */
long pv_blk_discard(pv_blk *d, uint64_t sector, size_t len);

/* Async: queues one request (op = PV_BLOCK_OP_*; len <= PV_BLOCK_MAX_TRANSFER) without ringing the doorbell.
 * Returns 0, PV_STATUS_BUSY when the ring is full (complete some first), or PV_STATUS_INVALID. */
long pv_blk_submit(pv_blk *d, uint32_t op, uint64_t sector, void *buf, uint32_t len, uint64_t cookie);
/* Publishes the queued requests; rings the doorbell only when the host asked. */
long pv_blk_kick(pv_blk *d);
/* Requests submitted and not completed. */
uint32_t pv_blk_inflight(const pv_blk *d);
/* Collects up to `max` completions, waiting until at least one or the deadline (PV_STATUS_TIMED_OUT); kicks
 * first. Returns the count. */
long pv_blk_complete(pv_blk *d, pv_blk_completion *out, size_t max, uint64_t deadline_ns);

/* ---- Net ------------------------------------------------------------------------------------------------- */

typedef struct pv_net {
    uint32_t index;
    uint32_t port;
    uint32_t mtu;
    uint8_t mac[6];
    uint32_t buf_size;  /* bytes per tx/rx buffer (>= mtu + 14) */
    pv_ring tx, rx;
    uint8_t *tx_bufs;   /* tx.size buffers; buffer i belongs to tx slot i */
    uint8_t *rx_bufs;   /* rx.size buffers, kept posted */
    uint64_t rx_dropped; /* responses with an error status */
} pv_net;

/* Opens net device `name` (the first when NULL), attaches both rings and posts every receive buffer. */
long pv_net_open(pv_net *n, const char *name);
/* Sends one Ethernet frame (14 <= len <= mtu + 14): copies it into a tx buffer and rings the doorbell when the
 * host asked. Waits for a free slot when the ring is full. Returns len. */
long pv_net_send(pv_net *n, const void *frame, size_t len);
/* Receives one frame into buf (PV_STATUS_TOO_BIG when cap is too small; the frame is dropped), waiting up to the
 * deadline (PV_STATUS_TIMED_OUT). The buffer is reposted at once. Returns the frame length. */
long pv_net_recv(pv_net *n, void *buf, size_t cap, uint64_t deadline_ns);

#ifdef __cplusplus
}
#endif

#endif /* PARAVIRT_DEVICES_H */
