/*
 * kvstore-guest: a C driver for the sample key-value device (kvstore.h), a device type the host application defines
 * (samples/kvstore-host). It uses only the generic device model and the SDK's ring helpers:
 *
 *   pv_device_lookup(type, "kv0")  -> index and descriptor (type, version, queue count)
 *   pv_device_config               -> kvstore_config
 *   pv_device_ring_alloc + pv_device_attach -> one ring, and the event port the host bound to it
 *   pv_ring_* + pv_event_send + pv_poll     -> requests, the doorbell, waiting for responses
 *   pv_device_reset                -> detach (and attach again)
 *
 * It reads a value the host stored, writes a batch of keys (several requests per doorbell), reads them back,
 * deletes one, checks the device's answers to bad requests (a short buffer, a key outside guest memory), stores
 * "result" for the host to read, and resets and re-attaches the device. Exit status 0 when every check held.
 */
#include <paravirt/paravirt.h>

#include "kvstore.h"

#define RING_ORDER 3 /* 8 slots: the batch below takes several rounds */
#define TIMEOUT_NS (10ull * 1000 * 1000 * 1000)

static pv_ring ring;
static pv_queue_desc queue;
static uint64_t next_id = 1;
static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        pv_printf("kvstore-guest: FAILED: %s\n", what);
        failures++;
    }
}

/* Queues one request (the caller made sure a slot is free). */
static void submit(uint32_t op, const char *key, void *value, uint32_t value_length)
{
    kvstore_request *r = pv_ring_next_request(&ring);
    memset(r, 0, sizeof(*r));
    r->id = next_id++;
    r->op = op;
    r->key_length = (uint32_t)strlen(key);
    r->key = pv_phys(key);
    r->value = value != NULL ? pv_phys(value) : 0;
    r->value_length = value_length;
    pv_ring_queue_request(&ring);
}

/* Publishes queued requests and rings the doorbell when the host asked for it. */
static void kick(void)
{
    if (pv_ring_push_requests(&ring)) {
        pv_event_send(queue.port);
    }
}

/* Waits for the next response and copies it out of its slot. */
static long take_response(kvstore_response *out)
{
    uint64_t deadline = pv_clock_monotonic_ns() + TIMEOUT_NS;
    while (pv_ring_final_check_for_responses(&ring) == 0) {
        if (pv_clock_monotonic_ns() >= deadline) {
            return PV_STATUS_TIMED_OUT;
        }
        pv_poll(deadline, 1ull << queue.port);
    }
    if (!pv_ring_responses_sane(&ring)) {
        return PV_STATUS_PROTOCOL;
    }
    *out = *(const kvstore_response *)pv_ring_next_response(&ring);
    pv_ring_consume_response(&ring);
    return 0;
}

/* One synchronous request; returns the response's status (its value length in *length). */
static long call(uint32_t op, const char *key, void *value, uint32_t value_length, uint32_t *length)
{
    submit(op, key, value, value_length);
    kick();
    kvstore_response rsp;
    long r = take_response(&rsp);
    if (r < 0) {
        return r;
    }
    if (length != NULL) {
        *length = rsp.value_length;
    }
    return rsp.status;
}

static long attach(long index)
{
    memset(&queue, 0, sizeof(queue));
    long r = pv_device_ring_alloc(&ring, &queue, RING_ORDER, KVSTORE_SLOT_SIZE);
    if (r < 0) {
        return r;
    }
    return pv_device_attach((uint32_t)index, &queue, 1);
}

int main(void)
{
    pv_device_desc desc;
    long index = pv_device_lookup(KVSTORE_DEVICE_TYPE, "kv0", &desc);
    if (index < 0) {
        pv_printf("kvstore-guest: no key-value device kv0 (status %ld)\n", index);
        return 2;
    }
    if (desc.version != KVSTORE_VERSION || desc.queue_count != 1 || desc.config_size < sizeof(kvstore_config)) {
        pv_printf("kvstore-guest: device kv0 speaks version %u with %u queues: not this driver's\n", desc.version, desc.queue_count);
        return 2;
    }
    kvstore_config config;
    long r = pv_device_config((uint32_t)index, &config, sizeof(config));
    check(r == (long)sizeof(config), "device_config returns the configuration");
    pv_printf("kvstore-guest: device %ld type 0x%x v%u: max key %u, max value %u, capacity %u, %u entries\n",
              index, desc.type, desc.version, config.max_key, config.max_value, config.capacity, config.entries);

    r = attach(index);
    if (r < 0) {
        pv_printf("kvstore-guest: attach failed (status %ld)\n", r);
        return 2;
    }
    pv_printf("kvstore-guest: attached, ring of %u slots on event port %u\n", ring.size, queue.port);

    /* A value the host stored before the run. */
    static char value[256];
    uint32_t length = 0;
    r = call(KVSTORE_OP_GET, "greeting", value, sizeof(value) - 1, &length);
    check(r == 0, "GET greeting");
    value[r == 0 && length < sizeof(value) ? length : 0] = 0;
    pv_printf("kvstore-guest: greeting = \"%s\"\n", value);

    /* A batch: 20 PUTs, as many per doorbell as the ring has free slots. */
    enum { BATCH = 20 };
    static char keys[BATCH][16], values[BATCH][16];
    int submitted = 0, completed = 0, kicks = 0;
    while (completed < BATCH) {
        while (submitted < BATCH && pv_ring_free_requests(&ring) > 0) {
            pv_snprintf(keys[submitted], sizeof(keys[0]), "key-%d", submitted);
            pv_snprintf(values[submitted], sizeof(values[0]), "value-%d", submitted * submitted);
            submit(KVSTORE_OP_PUT, keys[submitted], values[submitted], (uint32_t)strlen(values[submitted]));
            submitted++;
        }
        kick();
        kicks++;
        kvstore_response rsp;
        do {
            r = take_response(&rsp);
            check(r == 0 && rsp.status == 0, "batched PUT");
            completed++;
        } while (r == 0 && pv_ring_unconsumed_responses(&ring) > 0);
        if (r < 0) {
            break;
        }
    }
    pv_printf("kvstore-guest: stored %d keys in %d rounds\n", completed, kicks);

    int matched = 0;
    for (int i = 0; i < BATCH; i++) {
        r = call(KVSTORE_OP_GET, keys[i], value, sizeof(value) - 1, &length);
        if (r == 0 && length == strlen(values[i]) && memcmp(value, values[i], length) == 0) {
            matched++;
        }
    }
    check(matched == BATCH, "every batched key reads back");
    pv_printf("kvstore-guest: read back %d of %d\n", matched, BATCH);

    check(call(KVSTORE_OP_DELETE, "key-0", NULL, 0, NULL) == 0, "DELETE key-0");
    check(call(KVSTORE_OP_GET, "key-0", value, sizeof(value), NULL) == PV_STATUS_NOT_FOUND, "a deleted key is NOT_FOUND");

    /* The device validates what the guest hands it: a short buffer, a key outside guest memory. */
    r = call(KVSTORE_OP_GET, "greeting", value, 2, &length);
    check(r == PV_STATUS_TOO_BIG && length > 2, "GET into a short buffer is TOO_BIG with the needed length");
    kvstore_request *bad = pv_ring_next_request(&ring);
    memset(bad, 0, sizeof(*bad));
    bad->id = next_id++;
    bad->op = KVSTORE_OP_GET;
    bad->key_length = 4;
    bad->key = pv_boot_info_get()->memory_size - 2; /* straddles the end of guest memory */
    bad->value = pv_phys(value);
    bad->value_length = sizeof(value);
    pv_ring_queue_request(&ring);
    kick();
    kvstore_response rsp;
    check(take_response(&rsp) == 0 && rsp.status == PV_STATUS_FAULT, "a key outside guest memory is FAULT");
    pv_printf("kvstore-guest: bad requests answered TOO_BIG and FAULT\n");

    static const char result[] = "ok";
    check(call(KVSTORE_OP_PUT, "result", (void *)result, 2, NULL) == 0, "PUT result");

    /* Reset detaches: the port is dead until the device is attached again. */
    uint32_t old_port = queue.port;
    check(pv_device_reset((uint32_t)index) == 0, "device_reset");
    check(pv_event_send(old_port) == PV_STATUS_BAD_HANDLE, "the doorbell of a reset device is BAD_HANDLE");
    check(attach(index) == 0, "attach again after reset");
    r = call(KVSTORE_OP_GET, "result", value, sizeof(value), &length);
    check(r == 0 && length == 2 && memcmp(value, "ok", 2) == 0, "GET after re-attach");
    pv_printf("kvstore-guest: reset and re-attached on port %u\n", queue.port);

    if (failures != 0) {
        pv_printf("kvstore-guest: %d checks failed\n", failures);
        return 1;
    }
    pv_puts("kvstore-guest: all checks passed");
    return 0;
}
