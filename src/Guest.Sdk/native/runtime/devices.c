/*
 * devices.c: device discovery, the page allocator, and the console, block and net drivers (paravirt/devices.h).
 */
#include <paravirt/paravirt.h>

/* ---- Discovery, memory, events ----------------------------------------------------------------------------- */

/* The top of guest memory is left alone: the host's initial stack pointer points there. */
#define PV_HEAP_TOP_RESERVE (64u * 1024u)
#define PV_PAGE 4096u

static uint64_t pv_heap_next;
static uint64_t pv_heap_end;

static void pv_heap_init(void)
{
    if (pv_heap_end != 0) {
        return;
    }
    const pv_boot_info *bi = pv_boot_info_get();
    uint64_t start = (bi->heap_start + PV_PAGE - 1) & ~(uint64_t)(PV_PAGE - 1);
    uint64_t end = bi->memory_size > PV_HEAP_TOP_RESERVE ? (bi->memory_size - PV_HEAP_TOP_RESERVE) & ~(uint64_t)(PV_PAGE - 1) : 0;
    pv_heap_next = start;
    pv_heap_end = end > start ? end : start;
}

/* Weak: a guest with its own memory manager (the Linux personality) provides pv_page_alloc itself. */
__attribute__((weak)) void *pv_page_alloc(size_t count)
{
    pv_heap_init();
    if (count == 0 || count > (pv_heap_end - pv_heap_next) / PV_PAGE) {
        return NULL;
    }
    void *p = pv_virt(pv_heap_next);
    pv_heap_next += (uint64_t)count * PV_PAGE;
    memset(p, 0, count * PV_PAGE); /* the host zeroes memory, but a restarted driver may reuse nothing: be sure */
    return p;
}

__attribute__((weak)) size_t pv_page_available(void)
{
    pv_heap_init();
    return (size_t)(pv_heap_end - pv_heap_next);
}

long pv_event_send(uint32_t port)
{
    return pv_hypercall1(PV_HYPERCALL_EVENT_SEND, port);
}

long pv_device_info_get(uint32_t index, pv_device_info *info)
{
    long r = pv_hypercall3(PV_HYPERCALL_DEVICE_INFO, index, pv_phys(info), sizeof(*info));
    return r < 0 ? r : (long)index;
}

static int pv_name_field_equals(const uint8_t field[24], const char *name)
{
    size_t n = strlen(name);
    if (n >= 24) {
        return 0;
    }
    return memcmp(field, name, n) == 0 && field[n] == 0;
}

/* A device record of either ABI generation: 1.0's pv_device_info (pv_device_find), 1.1's pv_device_desc (lookup). */
typedef union {
    pv_device_info info;
    pv_device_desc desc;
} pv_device_record;

/*
 * The discovery loop of both generations: the first port whose record (pv_device_desc when `model`, else
 * pv_device_info) has type `type` and, unless `name` is NULL, that name; copies the record to `out` (when not NULL)
 * and returns its index, or a negative status. `feature` is the boot feature bit that generation needs.
 */
static long pv_device_scan(uint64_t feature, int model, uint32_t type, const char *name, void *out)
{
    if ((pv_boot_info_get()->features0 & feature) == 0) {
        return PV_STATUS_NOT_IMPLEMENTED;
    }
    pv_device_record rec;
    for (uint32_t i = 0; i < PV_RING_EVENT_PORTS; i++) {
        long r = model ? pv_device_describe(i, &rec.desc) : pv_device_info_get(i, &rec.info);
        if (r < 0) {
            return r;
        }
        uint32_t t = model ? rec.desc.type : rec.info.kind;
        const uint8_t *field = model ? (const uint8_t *)rec.desc.name : (const uint8_t *)rec.info.name;
        if (t == type && (name == NULL || pv_name_field_equals(field, name))) {
            if (out != NULL) {
                memcpy(out, &rec, model ? sizeof(rec.desc) : sizeof(rec.info));
            }
            return (long)i;
        }
    }
    return PV_STATUS_NO_DEVICE;
}

long pv_device_describe(uint32_t index, pv_device_desc *desc)
{
    long r = pv_hypercall3(PV_HYPERCALL_DEVICE_DESCRIBE, index, pv_phys(desc), sizeof(*desc));
    return r < 0 ? r : (long)index;
}

long pv_device_lookup(uint32_t type, const char *name, pv_device_desc *desc)
{
    return pv_device_scan(PV_FEATURE0_DEVICE_MODEL, 1, type, name, desc);
}

long pv_device_config(uint32_t index, void *buf, size_t cap)
{
    return pv_hypercall3(PV_HYPERCALL_DEVICE_CONFIG, index, pv_phys(buf), cap);
}

long pv_device_attach(uint32_t index, pv_queue_desc *queues, uint32_t count)
{
    return pv_hypercall3(PV_HYPERCALL_DEVICE_ATTACH, index, pv_phys(queues), count);
}

long pv_device_reset(uint32_t index)
{
    return pv_hypercall1(PV_HYPERCALL_DEVICE_RESET, index);
}

long pv_device_ring_alloc(pv_ring *ring, pv_queue_desc *queue, unsigned order, uint32_t slot_size)
{
    size_t bytes = pv_ring_bytes(order, slot_size);
    void *mem = pv_page_alloc((bytes + PV_PAGE - 1) / PV_PAGE);
    if (mem == NULL) {
        return PV_STATUS_NO_MEMORY;
    }
    pv_ring_init(ring, mem, order, slot_size);
    queue->address = pv_phys(mem);
    queue->order = order;
    queue->port = 0;
    return 0;
}

long pv_device_find(uint32_t kind, const char *name, pv_device_info *info)
{
    return pv_device_scan(PV_FEATURE0_DEVICES, 0, kind, name, info);
}

/* Waits for `port`'s event until the deadline; returns 1 on an event, 0 on timeout, or a negative status. */
static long pv_wait_port(uint32_t port, uint64_t deadline_ns)
{
    long r = pv_poll(deadline_ns, 1ull << port);
    if (r < 0) {
        return r;
    }
    return r != 0 ? 1 : 0;
}

static uint32_t pv_order_for(const pv_device_info *info, uint32_t wanted)
{
    uint32_t order = wanted;
    if (order > info->max_ring_order) {
        order = info->max_ring_order;
    }
    if (order > PV_RING_MAX_ORDER) {
        order = PV_RING_MAX_ORDER;
    }
    return order;
}

static size_t pv_pages_for(size_t bytes)
{
    return (bytes + PV_PAGE - 1) / PV_PAGE;
}

/* ---- Console --------------------------------------------------------------------------------------------- */

#define CONS_U32(c, off) (*(volatile uint32_t *)((c)->page + (off)))

long pv_cons_attach(pv_cons *c, const char *name)
{
    pv_device_info info;
    long index = pv_device_find(PV_DEVICE_KIND_CONSOLE, name, &info);
    if (index < 0) {
        return index;
    }
    uint8_t *page = pv_page_alloc(pv_pages_for(PV_CONSOLE_SIZE));
    if (page == NULL) {
        return PV_STATUS_NO_MEMORY;
    }
    c->page = page;
    c->index = (uint32_t)index;
    long port = pv_hypercall2(PV_HYPERCALL_CONSOLE_ATTACH, (uint64_t)index, pv_phys(page));
    if (port < 0) {
        return port;
    }
    c->port = (uint32_t)port;
    return 0;
}

long pv_cons_write(pv_cons *c, const void *buf, size_t len)
{
    const uint8_t *src = buf;
    size_t done = 0;
    while (done < len) {
        uint32_t prod = CONS_U32(c, PV_CONSOLE_OUT_PROD_OFFSET);
        uint32_t cons = CONS_U32(c, PV_CONSOLE_OUT_CONS_OFFSET);
        pv_rmb();
        uint32_t used = prod - cons;
        if (used > PV_CONSOLE_OUT_SIZE) {
            return PV_STATUS_BROKEN; /* the host corrupted out_cons */
        }
        uint32_t space = PV_CONSOLE_OUT_SIZE - used;
        if (space == 0) {
            /* Full: ask the host to drain (it does so synchronously) and, if it could not, wait a little. */
            long r = pv_event_send(c->port);
            if (r < 0) {
                return r;
            }
            if (CONS_U32(c, PV_CONSOLE_OUT_CONS_OFFSET) == cons) {
                r = pv_wait_port(c->port, pv_clock_monotonic_ns() + 1000000u);
                if (r < 0) {
                    return r;
                }
            }
            continue;
        }
        uint32_t n = (uint32_t)(len - done < space ? len - done : space);
        volatile uint8_t *ring = c->page + PV_CONSOLE_OUT_OFFSET;
        for (uint32_t i = 0; i < n; i++) {
            ring[(prod + i) & (PV_CONSOLE_OUT_SIZE - 1)] = src[done + i];
        }
        pv_wmb(); /* bytes before the index */
        CONS_U32(c, PV_CONSOLE_OUT_PROD_OFFSET) = prod + n;
        done += n;
    }
    /* One doorbell per write: the console has no output event index, and output must not sit in the ring. */
    long r = pv_event_send(c->port);
    return r < 0 ? r : (long)len;
}

long pv_cons_read(pv_cons *c, void *buf, size_t cap)
{
    /* in_flags before in_prod: the host publishes the final in_prod before it sets END_OF_INPUT. */
    uint32_t flags = CONS_U32(c, PV_CONSOLE_IN_FLAGS_OFFSET);
    pv_rmb();
    uint32_t cons = CONS_U32(c, PV_CONSOLE_IN_CONS_OFFSET);
    uint32_t prod = CONS_U32(c, PV_CONSOLE_IN_PROD_OFFSET);
    pv_rmb(); /* the index before the bytes */
    uint32_t avail = prod - cons;
    if (avail > PV_CONSOLE_IN_SIZE) {
        return PV_STATUS_BROKEN;
    }
    if (avail == 0 && (flags & PV_CONSOLE_IN_FLAGS_END_OF_INPUT) != 0) {
        return PV_CONS_EOF;
    }
    if (avail == 0 || cap == 0) {
        return 0;
    }
    uint32_t n = (uint32_t)(cap < avail ? cap : avail);
    volatile uint8_t *ring = c->page + PV_CONSOLE_IN_OFFSET;
    uint8_t *dst = buf;
    for (uint32_t i = 0; i < n; i++) {
        dst[i] = ring[(cons + i) & (PV_CONSOLE_IN_SIZE - 1)];
    }
    pv_mb(); /* the bytes were read before in_cons frees them */
    CONS_U32(c, PV_CONSOLE_IN_CONS_OFFSET) = cons + n;
    if (avail == PV_CONSOLE_IN_SIZE) {
        /* The ring was full: the host may hold more input; tell it there is space now. */
        pv_event_send(c->port);
    }
    return (long)n;
}

long pv_cons_read_wait(pv_cons *c, void *buf, size_t cap, uint64_t deadline_ns)
{
    for (;;) {
        long n = pv_cons_read(c, buf, cap);
        if (n != 0 || cap == 0) {
            return n;
        }
        long r = pv_wait_port(c->port, deadline_ns);
        if (r < 0) {
            return r;
        }
        if (r == 0) {
            /* One last look: input may have landed together with the timeout. */
            n = pv_cons_read(c, buf, cap);
            return n != 0 ? n : PV_STATUS_TIMED_OUT;
        }
    }
}

long pv_cons_read_line(pv_cons *c, char *line, size_t cap, uint64_t deadline_ns)
{
    size_t len = 0;
    size_t seen = 0;
    for (;;) {
        char ch;
        long r = pv_cons_read_wait(c, &ch, 1, deadline_ns);
        if (r == PV_CONS_EOF && seen > 0) {
            break; /* the last line had no '\n' */
        }
        if (r < 0) {
            return r;
        }
        seen++;
        if (ch == '\n') {
            break;
        }
        if (ch == '\r') {
            continue;
        }
        if (cap > 0 && len < cap - 1) {
            line[len++] = ch;
        }
    }
    if (cap > 0) {
        line[len] = 0;
    }
    return (long)len;
}

/* ---- Block ----------------------------------------------------------------------------------------------- */

long pv_blk_open(pv_blk *d, const char *name)
{
    pv_device_info info;
    long index = pv_device_find(PV_DEVICE_KIND_BLOCK, name, &info);
    if (index < 0) {
        return index;
    }
    if (info.sector_size != PV_BLOCK_SECTOR_SIZE) {
        return PV_STATUS_PROTOCOL;
    }
    uint32_t order = pv_order_for(&info, PV_RING_MAX_ORDER);
    void *mem = pv_page_alloc(pv_pages_for(pv_ring_bytes(order, PV_BLOCK_SLOT_SIZE)));
    if (mem == NULL) {
        return PV_STATUS_NO_MEMORY;
    }
    memset(d, 0, sizeof(*d));
    d->index = (uint32_t)index;
    d->sectors = info.sectors;
    d->flags = info.flags;
    d->read_only = (info.flags & PV_DEVICE_FLAGS_READ_ONLY) != 0;
    pv_ring_init(&d->ring, mem, order, PV_BLOCK_SLOT_SIZE);
    long port = pv_hypercall3(PV_HYPERCALL_BLOCK_ATTACH, (uint64_t)index, pv_phys(mem), order);
    if (port < 0) {
        return port;
    }
    d->port = (uint32_t)port;
    return 0;
}

long pv_blk_submit(pv_blk *d, uint32_t op, uint64_t sector, void *buf, uint32_t len, uint64_t cookie)
{
    if (op > PV_BLOCK_OP_DISCARD || len > PV_BLOCK_MAX_TRANSFER || (len % PV_BLOCK_SECTOR_SIZE) != 0 ||
        (op != PV_BLOCK_OP_FLUSH && len == 0)) {
        return PV_STATUS_INVALID;
    }
    if (pv_ring_free_requests(&d->ring) == 0) {
        return PV_STATUS_BUSY;
    }
    pv_block_request *req = pv_ring_next_request(&d->ring);
    memset(req, 0, sizeof(*req));
    req->id = cookie;
    req->operation = op;
    req->sector = sector;
    req->buffer = pv_phys(buf);
    req->length = len;
    pv_ring_queue_request(&d->ring);
    return 0;
}

long pv_blk_kick(pv_blk *d)
{
    if (pv_ring_push_requests(&d->ring)) {
        return pv_event_send(d->port);
    }
    return 0;
}

uint32_t pv_blk_inflight(const pv_blk *d)
{
    return pv_ring_outstanding(&d->ring);
}

long pv_blk_complete(pv_blk *d, pv_blk_completion *out, size_t max, uint64_t deadline_ns)
{
    long r = pv_blk_kick(d);
    if (r < 0) {
        return r;
    }
    for (;;) {
        if (!pv_ring_responses_sane(&d->ring)) {
            return PV_STATUS_PROTOCOL;
        }
        size_t got = 0;
        while (got < max && pv_ring_unconsumed_responses(&d->ring) != 0) {
            const pv_block_response *rsp = pv_ring_next_response(&d->ring);
            out[got].cookie = rsp->id;
            out[got].status = (long)rsp->status;
            out[got].length = rsp->length;
            pv_ring_consume_response(&d->ring);
            got++;
        }
        if (got != 0 || max == 0) {
            return (long)got;
        }
        if (pv_ring_outstanding(&d->ring) == 0) {
            return PV_STATUS_INVALID; /* nothing to wait for */
        }
        if (pv_ring_final_check_for_responses(&d->ring) != 0) {
            continue;
        }
        r = pv_wait_port(d->port, deadline_ns);
        if (r < 0) {
            return r;
        }
        if (r == 0 && pv_ring_unconsumed_responses(&d->ring) == 0) {
            return PV_STATUS_TIMED_OUT;
        }
    }
}

/* Runs a synchronous transfer: queues as many chunks as the ring holds, one doorbell, collects, repeats. The
 * cookie of chunk k is k; the first error (by chunk order) wins. */
static long pv_blk_sync(pv_blk *d, uint32_t op, uint64_t sector, uint8_t *buf, size_t len)
{
    if ((len % PV_BLOCK_SECTOR_SIZE) != 0 || (op != PV_BLOCK_OP_FLUSH && len == 0)) {
        return PV_STATUS_INVALID;
    }
    if (pv_blk_inflight(d) != 0) {
        return PV_STATUS_BUSY; /* the async API owns the ring right now */
    }
    size_t chunks = op == PV_BLOCK_OP_FLUSH ? 1 : (len + PV_BLOCK_MAX_TRANSFER - 1) / PV_BLOCK_MAX_TRANSFER;
    size_t next = 0, done = 0;
    long first_error = 0;
    size_t first_error_chunk = (size_t)-1;
    while (done < chunks) {
        while (next < chunks && pv_ring_free_requests(&d->ring) != 0) {
            size_t off = next * PV_BLOCK_MAX_TRANSFER;
            uint32_t n = (uint32_t)(len - off < PV_BLOCK_MAX_TRANSFER ? len - off : PV_BLOCK_MAX_TRANSFER);
            long r = pv_blk_submit(d, op, sector + off / PV_BLOCK_SECTOR_SIZE, buf == NULL ? NULL : buf + off, n, next);
            if (r < 0) {
                return r;
            }
            next++;
        }
        pv_blk_completion comp[16];
        long got = pv_blk_complete(d, comp, 16, PV_DEADLINE_NEVER);
        if (got < 0) {
            return got;
        }
        for (long i = 0; i < got; i++) {
            if (comp[i].status < 0 && comp[i].cookie < first_error_chunk) {
                first_error = comp[i].status;
                first_error_chunk = comp[i].cookie;
            }
        }
        done += (size_t)got;
    }
    return first_error < 0 ? first_error : (long)len;
}

long pv_blk_read(pv_blk *d, uint64_t sector, void *buf, size_t len)
{
    return pv_blk_sync(d, PV_BLOCK_OP_READ, sector, buf, len);
}

long pv_blk_write(pv_blk *d, uint64_t sector, const void *buf, size_t len)
{
    if (d->read_only) {
        /* The host refuses too; answering here saves the round trip but keeps the same status. */
        return PV_STATUS_READ_ONLY;
    }
    return pv_blk_sync(d, PV_BLOCK_OP_WRITE, sector, (uint8_t *)(uintptr_t)buf, len);
}

long pv_blk_flush(pv_blk *d)
{
    long r = pv_blk_sync(d, PV_BLOCK_OP_FLUSH, 0, NULL, 0);
    return r < 0 ? r : 0;
}

long pv_blk_discard(pv_blk *d, uint64_t sector, size_t len)
{
    if (d->read_only) {
        return PV_STATUS_READ_ONLY;
    }
    return pv_blk_sync(d, PV_BLOCK_OP_DISCARD, sector, NULL, len);
}

/* ---- Net ------------------------------------------------------------------------------------------------- */

static void pv_net_post_rx(pv_net *n, uint64_t buffer_index)
{
    pv_net_rx_request *req = pv_ring_next_request(&n->rx);
    memset(req, 0, sizeof(*req));
    req->id = buffer_index;
    req->buffer = pv_phys(n->rx_bufs + buffer_index * n->buf_size);
    req->capacity = n->buf_size;
    pv_ring_queue_request(&n->rx);
}

long pv_net_open(pv_net *n, const char *name)
{
    pv_device_info info;
    long index = pv_device_find(PV_DEVICE_KIND_NET, name, &info);
    if (index < 0) {
        return index;
    }
    memset(n, 0, sizeof(*n));
    n->index = (uint32_t)index;
    n->mtu = info.mtu;
    memcpy(n->mac, info.mac, 6);
    if (n->mtu + PV_NET_ETHERNET_HEADER > PV_NET_MAX_FRAME || n->mtu == 0) {
        return PV_STATUS_PROTOCOL;
    }
    n->buf_size = (n->mtu + PV_NET_ETHERNET_HEADER + 63u) & ~63u;
    uint32_t order = pv_order_for(&info, 5); /* 32 frames in flight each way */
    uint32_t slots = 1u << order;
    size_t ring_pages = pv_pages_for(pv_ring_bytes(order, PV_NET_SLOT_SIZE));
    void *tx = pv_page_alloc(ring_pages);
    void *rx = pv_page_alloc(ring_pages);
    n->tx_bufs = pv_page_alloc(pv_pages_for((size_t)slots * n->buf_size));
    n->rx_bufs = pv_page_alloc(pv_pages_for((size_t)slots * n->buf_size));
    if (tx == NULL || rx == NULL || n->tx_bufs == NULL || n->rx_bufs == NULL) {
        return PV_STATUS_NO_MEMORY;
    }
    pv_ring_init(&n->tx, tx, order, PV_NET_SLOT_SIZE);
    pv_ring_init(&n->rx, rx, order, PV_NET_SLOT_SIZE);
    for (uint32_t i = 0; i < slots; i++) {
        pv_net_post_rx(n, i);
    }
    /* Publish before attaching: the host reads the ring indices at attach. No doorbell needed yet. */
    pv_ring_push_requests(&n->rx);
    long port = pv_hypercall4(PV_HYPERCALL_NET_ATTACH, (uint64_t)index, pv_phys(tx),
                              pv_phys(rx), order);
    if (port < 0) {
        return port;
    }
    n->port = (uint32_t)port;
    return 0;
}

/* Consumes transmit completions (their buffers become free: buffer i belongs to slot i). */
static long pv_net_reap_tx(pv_net *n)
{
    if (!pv_ring_responses_sane(&n->tx)) {
        return PV_STATUS_PROTOCOL;
    }
    while (pv_ring_unconsumed_responses(&n->tx) != 0) {
        pv_ring_consume_response(&n->tx);
    }
    return 0;
}

long pv_net_send(pv_net *n, const void *frame, size_t len)
{
    if (len < PV_NET_ETHERNET_HEADER || len > (size_t)n->mtu + PV_NET_ETHERNET_HEADER) {
        return PV_STATUS_INVALID;
    }
    for (;;) {
        long r = pv_net_reap_tx(n);
        if (r < 0) {
            return r;
        }
        if (pv_ring_free_requests(&n->tx) != 0) {
            break;
        }
        /* Full: make sure the host looks, then wait for completions. */
        if (pv_ring_final_check_for_responses(&n->tx) == 0) {
            r = pv_event_send(n->port);
            if (r < 0) {
                return r;
            }
            if (pv_ring_unconsumed_responses(&n->tx) == 0) {
                r = pv_wait_port(n->port, pv_clock_monotonic_ns() + 1000000u);
                if (r < 0) {
                    return r;
                }
            }
        }
    }
    uint32_t slot = n->tx.req_prod_pvt & (n->tx.size - 1);
    uint8_t *buf = n->tx_bufs + (size_t)slot * n->buf_size;
    memcpy(buf, frame, len);
    pv_net_tx_request *req = pv_ring_next_request(&n->tx);
    memset(req, 0, sizeof(*req));
    req->id = slot;
    req->buffer = pv_phys(buf);
    req->length = (uint32_t)len;
    pv_ring_queue_request(&n->tx);
    if (pv_ring_push_requests(&n->tx)) {
        long r = pv_event_send(n->port);
        if (r < 0) {
            return r;
        }
    }
    return (long)len;
}

long pv_net_recv(pv_net *n, void *buf, size_t cap, uint64_t deadline_ns)
{
    for (;;) {
        if (!pv_ring_responses_sane(&n->rx)) {
            return PV_STATUS_PROTOCOL;
        }
        if (pv_ring_unconsumed_responses(&n->rx) != 0) {
            pv_net_rx_response rsp = *(const pv_net_rx_response *)pv_ring_next_response(&n->rx);
            pv_ring_consume_response(&n->rx);
            if (rsp.id >= n->rx.size) {
                return PV_STATUS_PROTOCOL; /* not a buffer we posted */
            }
            uint64_t id = rsp.id;
            long result;
            if (rsp.status < 0) {
                n->rx_dropped++;
                result = 0;
            } else if (rsp.length > n->buf_size) {
                result = PV_STATUS_PROTOCOL;
            } else if (rsp.length > cap) {
                result = PV_STATUS_TOO_BIG;
            } else {
                memcpy(buf, n->rx_bufs + id * n->buf_size, rsp.length);
                result = (long)rsp.length;
            }
            pv_net_post_rx(n, id); /* keep every buffer posted */
            if (pv_ring_push_requests(&n->rx)) {
                long r = pv_event_send(n->port);
                if (r < 0) {
                    return r;
                }
            }
            if (result != 0) {
                return result;
            }
            continue;
        }
        if (pv_ring_final_check_for_responses(&n->rx) != 0) {
            continue;
        }
        long r = pv_wait_port(n->port, deadline_ns);
        if (r < 0) {
            return r;
        }
        if (r == 0 && pv_ring_unconsumed_responses(&n->rx) == 0) {
            return PV_STATUS_TIMED_OUT;
        }
    }
}
