/*
 * net: two guests on one switch play ping-pong with Ethernet frames over the paravirtual net device "net0".
 *
 * Command line: role=ping, role=pong or role=auto (the default), rounds=N (default 100), seed=N (default 1).
 * auto: both guests broadcast a hello every 20 ms until they hear the other's; the one with the lower MAC
 * pings (so `paravirt run net.elf net.elf --net switch:s0` works with one command line for both).
 * The pinger broadcasts round 0 (it does not know the ponger's MAC yet), then sends each round to the MAC that
 * answered; every frame carries (magic, round, length, payload, FNV-1a checksum of the payload) with a seeded
 * payload of 46..MTU-16 bytes. The ponger checks the checksum and echoes the frame back with the addresses
 * swapped; the pinger checks that the echo is identical. Stop-and-wait with retransmission after 50 ms (frames
 * sent before the peer attached are lost), duplicates are answered again and not counted.
 * Both print "net: <role> N rounds, checksum 0x..." (the same checksum on both sides) and exit 0; bench=1
 * makes the pinger print the round-trip rate.
 * Streaming (for bench/devices.sh): role=sink announces itself with a broadcast, then counts frames until an end
 * marker and prints "bench: net-stream frames=N ns=T"; role=source waits for the announcement and sends frames=N
 * frames of size=S bytes (default 1514) back to back, then the end marker.
 * Exit status: 0 success, 1 no device, 2 I/O error, 3 corrupt frame, 4 timeout.
 */
#include <paravirt/paravirt.h>

PV_REQUIRE_DEVICE(PV_DEVICE_KIND_NET, "net0");

#define ETHERTYPE 0x88B5u /* IEEE 802 local experimental */
#define MAGIC 0x50564E54u /* "PVNT" */
#define HDR 14u
#define META 12u /* magic, round, length */

static pv_net nic;
static uint8_t txf[PV_NET_MAX_FRAME];
static uint8_t rxf[PV_NET_MAX_FRAME];

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Builds the frame of `round` to `dst`; returns its length. */
static size_t build(uint32_t round, const uint8_t *dst, uint64_t seed)
{
    uint32_t max_payload = nic.mtu - META - 4;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + round + 1;
    uint32_t len = 46 + (uint32_t)(x % (max_payload - 46 + 1));
    memcpy(txf, dst, 6);
    memcpy(txf + 6, nic.mac, 6);
    txf[12] = (uint8_t)(ETHERTYPE >> 8);
    txf[13] = (uint8_t)ETHERTYPE;
    put32(txf + HDR, MAGIC);
    put32(txf + HDR + 4, round);
    put32(txf + HDR + 8, len);
    uint8_t *payload = txf + HDR + META;
    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload[i] = (uint8_t)x;
    }
    put32(payload + len, fnv1a(payload, len));
    return HDR + META + len + 4;
}

/* Checks a received frame; returns its round, or -1 when it is not ours, or -2 when corrupt. */
static long parse(size_t n, uint32_t *checksum)
{
    if (n < HDR + META + 4 || rxf[12] != (uint8_t)(ETHERTYPE >> 8) || rxf[13] != (uint8_t)ETHERTYPE ||
        get32(rxf + HDR) != MAGIC) {
        return -1;
    }
    uint32_t len = get32(rxf + HDR + 8);
    if ((size_t)len + HDR + META + 4 != n) {
        return -2;
    }
    uint32_t sum = fnv1a(rxf + HDR + META, len);
    if (sum != get32(rxf + HDR + META + len)) {
        return -2;
    }
    *checksum = sum;
    return (long)get32(rxf + HDR + 4);
}

static int fail(int code, const char *what, long status)
{
    pv_printf("net: FAILED: %s (status %ld)\n", what, status);
    return code;
}

static int ping(uint32_t rounds, uint64_t seed)
{
    static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    uint8_t peer[6];
    int have_peer = 0;
    uint32_t total = 0, retransmits = 0;
    uint64_t t0 = pv_clock_monotonic_ns();
    uint64_t give_up = t0 + 30ull * 1000000000ull;
    for (uint32_t round = 0; round < rounds; round++) {
        size_t len = build(round, have_peer ? peer : broadcast, seed);
        uint32_t expect = fnv1a(txf + HDR + META, len - HDR - META - 4);
        long r = pv_net_send(&nic, txf, len);
        if (r < 0) {
            return fail(2, "send", r);
        }
        for (;;) {
            uint64_t now = pv_clock_monotonic_ns();
            if (now > give_up) {
                return fail(4, "no answer from the ponger", PV_STATUS_TIMED_OUT);
            }
            long n = pv_net_recv(&nic, rxf, sizeof(rxf), now + 50000000ull);
            if (n == PV_STATUS_TIMED_OUT) {
                retransmits++;
                if ((r = pv_net_send(&nic, txf, len)) < 0) {
                    return fail(2, "resend", r);
                }
                continue;
            }
            if (n < 0) {
                return fail(2, "recv", n);
            }
            uint32_t sum;
            long got = parse((size_t)n, &sum);
            if (got == -2) {
                return fail(3, "corrupt echo", (long)round);
            }
            if (got != (long)round) {
                continue; /* not ours, or a late duplicate */
            }
            if ((size_t)n != len || memcmp(rxf + HDR, txf + HDR, len - HDR) != 0 || sum != expect) {
                return fail(3, "the echo differs from the frame sent", (long)round);
            }
            if (!have_peer) {
                memcpy(peer, rxf + 6, 6);
                have_peer = 1;
            }
            total = (total ^ sum) * 16777619u + round;
            break;
        }
    }
    uint64_t ns = pv_clock_monotonic_ns() - t0;
    pv_printf("net: ping %u rounds, checksum 0x%08x, %u retransmits\n", rounds, total, retransmits);
    if (pv_cmdline_u64("bench", 0) != 0) {
        pv_printf("bench: net-roundtrips rounds=%u ns=%llu\n", rounds, (unsigned long long)ns);
    }
    return 0;
}

/* pending: the length of a frame already in rxf to handle first (0: none). */
static int pong(uint32_t rounds, long pending)
{
    uint32_t total = 0;
    long next = 0;
    uint64_t give_up = pv_clock_monotonic_ns() + 60ull * 1000000000ull;
    while (next < (long)rounds) {
        long n = pending > 0 ? pending : pv_net_recv(&nic, rxf, sizeof(rxf), give_up);
        pending = 0;
        if (n == PV_STATUS_TIMED_OUT) {
            return fail(4, "no frame from the pinger", n);
        }
        if (n < 0) {
            return fail(2, "recv", n);
        }
        uint32_t sum;
        long got = parse((size_t)n, &sum);
        if (got == -2) {
            return fail(3, "corrupt frame", next);
        }
        if (got < 0 || got > next) {
            continue;
        }
        /* Echo (also a duplicate of the previous round: our answer was lost or late). */
        memcpy(txf, rxf + 6, 6);
        memcpy(txf + 6, nic.mac, 6);
        memcpy(txf + 12, rxf + 12, (size_t)n - 12);
        long r = pv_net_send(&nic, txf, (size_t)n);
        if (r < 0) {
            return fail(2, "send", r);
        }
        if (got == next) {
            total = (total ^ sum) * 16777619u + (uint32_t)got;
            next++;
        }
    }
    pv_printf("net: pong %u rounds, checksum 0x%08x\n", rounds, total);
    return 0;
}

#define END_ROUND 0xFFFFFFFFu
#define HELLO_MAGIC 0x50564845u /* "PVHE" */

static long send_hello(void)
{
    static uint8_t hello[60];
    memset(hello, 0xff, 6);
    memcpy(hello + 6, nic.mac, 6);
    hello[12] = (uint8_t)(ETHERTYPE >> 8);
    hello[13] = (uint8_t)ETHERTYPE;
    put32(hello + HDR, HELLO_MAGIC);
    return pv_net_send(&nic, hello, sizeof(hello));
}

static int auto_role(uint32_t rounds, uint64_t seed)
{
    uint64_t give_up = pv_clock_monotonic_ns() + 60ull * 1000000000ull;
    uint64_t next_hello = 0;
    for (;;) {
        uint64_t now = pv_clock_monotonic_ns();
        if (now > give_up) {
            return fail(4, "no peer answered the hellos", PV_STATUS_TIMED_OUT);
        }
        if (now >= next_hello) {
            long r = send_hello();
            if (r < 0) {
                return fail(2, "send hello", r);
            }
            next_hello = now + 20000000ull;
        }
        long n = pv_net_recv(&nic, rxf, sizeof(rxf), next_hello);
        if (n == PV_STATUS_TIMED_OUT) {
            continue;
        }
        if (n < 0) {
            return fail(2, "recv", n);
        }
        if (n >= (long)(HDR + 4) && rxf[12] == (uint8_t)(ETHERTYPE >> 8) && rxf[13] == (uint8_t)ETHERTYPE &&
            get32(rxf + HDR) == HELLO_MAGIC && memcmp(rxf + 6, nic.mac, 6) != 0) {
            send_hello(); /* the peer may have attached after our last hello */
            int lower = memcmp(nic.mac, rxf + 6, 6) < 0;
            pv_printf("net: auto role: %s\n", lower ? "ping" : "pong");
            return lower ? ping(rounds, seed) : pong(rounds, 0);
        }
        uint32_t sum;
        if (parse((size_t)n, &sum) >= 0) {
            pv_printf("net: auto role: pong\n"); /* the peer already pings */
            return pong(rounds, n);
        }
    }
}

static int source(uint64_t seed)
{
    static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    uint32_t frames = (uint32_t)pv_cmdline_u64("frames", 10000);
    uint32_t size = (uint32_t)pv_cmdline_u64("size", 1514);
    uint64_t give_up = pv_clock_monotonic_ns() + 60ull * 1000000000ull;
    for (;;) { /* wait for the sink's announcement */
        long n = pv_net_recv(&nic, rxf, sizeof(rxf), give_up);
        if (n < 0) {
            return fail(4, "no announcement from the sink", n);
        }
        uint32_t sum;
        if (parse((size_t)n, &sum) == 0) {
            break;
        }
    }
    size_t len = build(1, broadcast, seed);
    if (size >= HDR + META + 4 && size <= len) {
        len = size;
    }
    uint64_t t0 = pv_clock_monotonic_ns();
    for (uint32_t i = 0; i < frames; i++) {
        put32(txf + HDR + 4, i + 1);
        long r = pv_net_send(&nic, txf, len);
        if (r < 0) {
            return fail(2, "send", r);
        }
    }
    uint64_t ns = pv_clock_monotonic_ns() - t0;
    put32(txf + HDR + 4, END_ROUND);
    for (int i = 0; i < 20; i++) {
        pv_net_send(&nic, txf, len);
        pv_poll(pv_clock_monotonic_ns() + 5000000u, 0);
    }
    pv_printf("net: source sent %u frames of %u bytes in %llu us\n", frames, (unsigned)len, (unsigned long long)(ns / 1000));
    return 0;
}

static int sink(void)
{
    static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    size_t len = build(0, broadcast, 1);
    uint64_t give_up = pv_clock_monotonic_ns() + 60ull * 1000000000ull;
    uint64_t t0 = 0, t_last = 0;
    uint32_t count = 0;
    for (;;) {
        uint64_t now = pv_clock_monotonic_ns();
        if (t0 == 0) {
            pv_net_send(&nic, txf, len); /* announce until the first frame arrives */
        }
        long n = pv_net_recv(&nic, rxf, sizeof(rxf), t0 == 0 ? now + 20000000ull : give_up);
        if (n == PV_STATUS_TIMED_OUT && t0 == 0) {
            continue;
        }
        if (n < 0) {
            return fail(4, "stream ended without the end marker", n);
        }
        if (n < (long)(HDR + META) || get32(rxf + HDR) != MAGIC) {
            continue;
        }
        uint32_t round = get32(rxf + HDR + 4);
        if (round == END_ROUND) {
            break;
        }
        if (t0 == 0) {
            t0 = pv_clock_monotonic_ns();
        }
        t_last = pv_clock_monotonic_ns();
        count++;
    }
    pv_printf("net: sink received %u frames\n", count);
    pv_printf("bench: net-stream frames=%u ns=%llu\n", count, (unsigned long long)(t_last - t0));
    return 0;
}

int main(void)
{
    long r = pv_net_open(&nic, "net0");
    if (r < 0) {
        return fail(1, "no net device net0", r);
    }
    char role[8] = "auto";
    pv_cmdline_get("role", role, sizeof(role));
    uint32_t rounds = (uint32_t)pv_cmdline_u64("rounds", 100);
    uint64_t seed = pv_cmdline_u64("seed", 1);
    pv_printf("net: %s on net0 %02x:%02x:%02x:%02x:%02x:%02x mtu %u\n", role, nic.mac[0], nic.mac[1], nic.mac[2],
              nic.mac[3], nic.mac[4], nic.mac[5], nic.mtu);
    if (nic.mtu < 46 + META + 4) {
        return fail(1, "MTU too small", (long)nic.mtu);
    }
    if (strcmp(role, "source") == 0) {
        return source(seed);
    }
    if (strcmp(role, "sink") == 0) {
        return sink();
    }
    if (strcmp(role, "auto") == 0) {
        return auto_role(rounds, seed);
    }
    return strcmp(role, "ping") == 0 ? ping(rounds, seed) : pong(rounds, 0);
}
