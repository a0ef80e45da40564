/*
 * plugin-guest: a sandbox guest. Its functions are declared with PV_GUEST_FUNCTION (the host lists them from the
 * image's notes before running it); main initializes once and serves calls with pv_sandbox_serve.
 *
 *   Add(a, b)            -> a + b
 *   Scale(point, k)      -> point with X and Y multiplied by k; a point is a map {"X": int, "Y": int} (what
 *                           MessagePack-CSharp's contractless resolver makes of `record Point(int X, int Y)`) or an
 *                           array [X, Y] ([MessagePackObject] with [Key(0)], [Key(1)])
 *   Greet(name)          -> "<greeting>, <name>!", the greeting from the host function GetGreeting()
 *   Count()              -> how often Count ran since initialization (state that a restore resets)
 *   Initialized()        -> the value main computed during initialization
 *   RoundTrip(value)     -> value, decoded with the typed readers and encoded again with the typed writers
 *   Echo(value)          -> value, copied as raw bytes
 *   Log(text)            -> writes text to the optional console device "console" (its ring: device state that
 *                           snapshots carry); returns the bytes written, or PV_STATUS_NO_DEVICE without one
 *   Fail(message)        -> an error (PV_STATUS_INVALID) carrying the message
 *   CallHost(name, arg)  -> the result of host function `name` called with `arg`, or its error message
 *   HostCalls(name, n)   -> calls host function `name` (no arguments) n times; returns n (for benchmarks)
 *   Dirty(pages)         -> writes one byte into each of `pages` pages of a scratch area (returns how many)
 *   Crash()              -> executes ud2 (invalid opcode)
 *   Overflow(depth)      -> recurses without bound: a stack overflow into the guard page
 *   Spin()               -> loops forever (a timeout)
 *   Exit(status)         -> calls pv_exit instead of returning
 */
#include <paravirt/paravirt.h>

PV_DEVICE_MANIFEST(PV_DEVICE_OPTIONAL(PV_DEVICE_KIND_CONSOLE, "console"));

static pv_cons console;
static bool has_console;
static uint64_t calls;
static int64_t initialized;
static uint8_t *scratch;
static size_t scratch_pages;

PV_GUEST_FUNCTION(Add, args, result)
{
    int64_t a = pv_mp_read_int(args);
    int64_t b = pv_mp_read_int(args);
    pv_mp_write_int(result, a + b);
    return 0;
}

/* Reads a point as {"X": x, "Y": y} (any key order) or [x, y]. */
static void read_point(pv_mp_reader *r, int64_t *x, int64_t *y)
{
    *x = *y = 0;
    if (pv_mp_peek(r) == PV_MP_ARRAY) {
        if (pv_mp_read_array(r) == 2) {
            *x = pv_mp_read_int(r);
            *y = pv_mp_read_int(r);
        }
        return;
    }
    uint32_t n = pv_mp_read_map(r);
    for (uint32_t i = 0; i < n && r->error == 0; i++) {
        char key[8];
        pv_mp_read_cstr(r, key, sizeof key);
        if (strcmp(key, "X") == 0) {
            *x = pv_mp_read_int(r);
        } else if (strcmp(key, "Y") == 0) {
            *y = pv_mp_read_int(r);
        } else {
            pv_mp_skip(r);
        }
    }
}

PV_GUEST_FUNCTION(Scale, args, result)
{
    int64_t x, y;
    read_point(args, &x, &y);
    int64_t k = pv_mp_read_int(args);
    pv_mp_write_map(result, 2);
    pv_mp_write_cstr(result, "X");
    pv_mp_write_int(result, x * k);
    pv_mp_write_cstr(result, "Y");
    pv_mp_write_int(result, y * k);
    return 0;
}

PV_GUEST_FUNCTION(Greet, args, result)
{
    char name[64];
    if (pv_mp_read_cstr(args, name, sizeof name) < 0) {
        return pv_sandbox_fail(result, PV_STATUS_INVALID, "Greet takes a name of at most 63 bytes");
    }
    pv_host_call_begin("GetGreeting", 0);
    pv_mp_reader greeting;
    long status = pv_host_call_end(&greeting);
    char text[64];
    pv_mp_read_cstr(&greeting, text, sizeof text);
    if (status < 0) {
        return pv_sandbox_fail(result, status, "GetGreeting failed: %s", text);
    }
    char out[160];
    int n = pv_snprintf(out, sizeof out, "%s, %s!", text, name);
    pv_mp_write_str(result, out, (uint32_t)n);
    return 0;
}

PV_GUEST_FUNCTION(Count, args, result)
{
    (void)args;
    pv_mp_write_uint(result, ++calls);
    return 0;
}

PV_GUEST_FUNCTION(Initialized, args, result)
{
    (void)args;
    pv_mp_write_int(result, initialized);
    return 0;
}

/* Decodes one value with the typed readers and writes it again with the typed writers. */
static void round_trip(pv_mp_reader *r, pv_mp_writer *w, int depth)
{
    uint32_t n;
    int8_t type;
    const uint8_t *p;
    if (depth > PV_MP_MAX_DEPTH) {
        r->error = PV_STATUS_PROTOCOL;
        return;
    }
    switch (pv_mp_peek(r)) {
    case PV_MP_NIL: pv_mp_read_nil(r); pv_mp_write_nil(w); break;
    case PV_MP_BOOL: pv_mp_write_bool(w, pv_mp_read_bool(r)); break;
    case PV_MP_INT: pv_mp_write_int(w, pv_mp_read_int(r)); break;
    case PV_MP_UINT: pv_mp_write_uint(w, pv_mp_read_uint(r)); break;
    case PV_MP_FLOAT32: pv_mp_write_float(w, pv_mp_read_float(r)); break;
    case PV_MP_FLOAT64: pv_mp_write_double(w, pv_mp_read_double(r)); break;
    case PV_MP_STR: p = (const uint8_t *)pv_mp_read_str(r, &n); pv_mp_write_str(w, (const char *)p, n); break;
    case PV_MP_BIN: p = pv_mp_read_bin(r, &n); pv_mp_write_bin(w, p, n); break;
    case PV_MP_EXT: p = pv_mp_read_ext(r, &type, &n); pv_mp_write_ext(w, type, p, n); break;
    case PV_MP_ARRAY:
        n = pv_mp_read_array(r);
        pv_mp_write_array(w, n);
        for (uint32_t i = 0; i < n && r->error == 0; i++) {
            round_trip(r, w, depth + 1);
        }
        break;
    case PV_MP_MAP:
        n = pv_mp_read_map(r);
        pv_mp_write_map(w, n);
        for (uint32_t i = 0; i < 2 * n && r->error == 0; i++) {
            round_trip(r, w, depth + 1);
        }
        break;
    default:
        r->error = PV_STATUS_PROTOCOL;
        break;
    }
}

PV_GUEST_FUNCTION(RoundTrip, args, result)
{
    round_trip(args, result, 0);
    return 0;
}

PV_GUEST_FUNCTION(Echo, args, result)
{
    const uint8_t *start = args->pos;
    pv_mp_skip(args);
    pv_mp_write_raw(result, start, (size_t)(args->pos - start));
    return 0;
}

PV_GUEST_FUNCTION(Log, args, result)
{
    uint32_t n;
    const char *text = pv_mp_read_str(args, &n);
    if (!has_console) {
        return pv_sandbox_fail(result, PV_STATUS_NO_DEVICE, "no console device");
    }
    long written = pv_cons_write(&console, text, n);
    if (written < 0) {
        return pv_sandbox_fail(result, written, "console write failed");
    }
    pv_mp_write_int(result, written);
    return 0;
}

PV_GUEST_FUNCTION(Fail, args, result)
{
    char message[128];
    pv_mp_read_cstr(args, message, sizeof message);
    return pv_sandbox_fail(result, PV_STATUS_INVALID, "%s", message);
}

PV_GUEST_FUNCTION(CallHost, args, result)
{
    char name[48];
    pv_mp_read_cstr(args, name, sizeof name);
    const uint8_t *arg = args->pos;
    pv_mp_skip(args);
    size_t arg_length = (size_t)(args->pos - arg);
    if (args->error != 0) {
        return pv_sandbox_fail(result, PV_STATUS_INVALID, "CallHost(name, arg)");
    }
    pv_mp_writer *w = pv_host_call_begin(name, 1);
    pv_mp_write_raw(w, arg, arg_length);
    pv_mp_reader reply;
    long status = pv_host_call_end(&reply);
    if (status < 0) {
        char message[256];
        pv_mp_read_cstr(&reply, message, sizeof message);
        return pv_sandbox_fail(result, status, "%s", message);
    }
    pv_mp_write_raw(result, reply.pos, (size_t)(reply.end - reply.pos));
    return 0;
}

PV_GUEST_FUNCTION(HostCalls, args, result)
{
    char name[48];
    pv_mp_read_cstr(args, name, sizeof name);
    uint64_t n = pv_mp_read_uint(args);
    for (uint64_t i = 0; i < n; i++) {
        pv_host_call_begin(name, 0);
        pv_mp_reader reply;
        long status = pv_host_call_end(&reply);
        if (status < 0) {
            return pv_sandbox_fail(result, status, "host call %lu of %s failed", (unsigned long)i, name);
        }
    }
    pv_mp_write_uint(result, n);
    return 0;
}

PV_GUEST_FUNCTION(Dirty, args, result)
{
    uint64_t pages = pv_mp_read_uint(args);
    if (pages > scratch_pages) {
        pages = scratch_pages;
    }
    for (uint64_t i = 0; i < pages; i++) {
        scratch[i * 4096] += 1;
    }
    pv_mp_write_uint(result, pages);
    return 0;
}

PV_GUEST_FUNCTION(Crash, args, result)
{
    (void)args;
    (void)result;
    __asm__ volatile("ud2");
    return 0;
}

/* Each level keeps a 256-byte frame live across the call, so the recursion is real. */
static uint64_t overflow(uint64_t depth)
{
    volatile uint8_t frame[256];
    frame[0] = (uint8_t)depth;
    if (depth == UINT64_MAX) {
        return frame[0];
    }
    return overflow(depth + 1) + frame[0];
}

PV_GUEST_FUNCTION(Overflow, args, result)
{
    pv_mp_write_uint(result, overflow(pv_mp_read_uint(args)));
    return 0;
}

PV_GUEST_FUNCTION(Spin, args, result)
{
    (void)args;
    (void)result;
    for (volatile int spin = 1; spin;) {
    }
    return 0;
}

PV_GUEST_FUNCTION(Exit, args, result)
{
    (void)result;
    pv_exit((int)pv_mp_read_int(args));
    return 0;
}

int main(void)
{
    /* Initialization runs once; a snapshot after it is what every restored call starts from. */
    for (int64_t i = 1; i <= 1000; i++) {
        initialized += i;
    }
    has_console = (pv_boot_info_get()->features0 & PV_FEATURE0_DEVICES) != 0 && pv_cons_attach(&console, "console") >= 0;
    scratch_pages = 256;
    scratch = pv_page_alloc(scratch_pages);
    if (scratch == NULL) {
        scratch_pages = 0;
    }
    long status = pv_sandbox_serve();
    pv_printf("plugin-guest: not running in a sandbox (status %ld); its functions are called by a host through "
              "Paravirt.Hypervisor.Sandboxes.Sandbox\n", status);
    return 0;
}
