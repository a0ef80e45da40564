/*
 * blk: exercises the paravirtual block device "disk0".
 *
 * Read-write disk: seeded random writes (many sizes and offsets, up to 32 per doorbell through the async API),
 * flush, read back and verify every written sector, then a discard that must read back as zeros. The content of
 * a sector is a pure function of (seed, sector), so overlapping writes in any order leave a known pattern.
 * Read-only disk: reads work, and the host refuses a write and a discard with PV_STATUS_READ_ONLY.
 *
 * Command line: seed=N (default 1), requests=N (default 512), mode=bench (timed sequential and random I/O).
 * Exit status: 0 on success, 1 no disk, 2 I/O error, 3 verification failure, 4 read-only not enforced.
 */
#include <paravirt/paravirt.h>

PV_REQUIRE_DEVICE(PV_DEVICE_KIND_BLOCK, "disk0");

#define SECTOR PV_BLOCK_SECTOR_SIZE
#define STAGING_BYTES (4u << 20)
#define MAX_TEST_SECTORS (128u * 1024u) /* verify at most the first 64 MiB */
#define MAX_BATCH 32u

static pv_blk disk;
static uint8_t *staging;
static uint8_t covered[MAX_TEST_SECTORS / 8];
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Word `w` of sector `s`: splitmix64 of (seed, s, w). */
static inline uint64_t pattern(uint64_t seed, uint64_t s, uint64_t w)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + (s << 7) + w;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill(uint64_t seed, uint64_t sector, uint8_t *buf, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        uint64_t *p = (uint64_t *)(buf + (size_t)i * SECTOR);
        for (uint32_t w = 0; w < SECTOR / 8; w++) {
            p[w] = pattern(seed, sector + i, w);
        }
    }
}

static int check(uint64_t seed, uint64_t sector, const uint8_t *buf)
{
    const uint64_t *p = (const uint64_t *)buf;
    for (uint32_t w = 0; w < SECTOR / 8; w++) {
        if (p[w] != pattern(seed, sector, w)) {
            return 0;
        }
    }
    return 1;
}

static int fail(int code, const char *what, long status)
{
    pv_printf("blk: FAILED: %s (status %ld)\n", what, status);
    return code;
}

/* Collects every outstanding completion; returns 0 or the first error status. */
static long drain(uint32_t *completed)
{
    long first = 0;
    while (pv_blk_inflight(&disk) != 0) {
        pv_blk_completion c[MAX_BATCH];
        long n = pv_blk_complete(&disk, c, MAX_BATCH, PV_DEADLINE_NEVER);
        if (n < 0) {
            return n;
        }
        for (long i = 0; i < n; i++) {
            if (c[i].status < 0 && first == 0) {
                first = c[i].status;
            }
        }
        *completed += (uint32_t)n;
    }
    return first;
}

static int read_only_test(void)
{
    long r = pv_blk_read(&disk, 0, staging, 8 * SECTOR);
    if (r < 0) {
        return fail(2, "read from the read-only disk", r);
    }
    /* Ask the host directly (pv_blk_write would refuse in the guest already). */
    uint32_t done = 0;
    if ((r = pv_blk_submit(&disk, PV_BLOCK_OP_WRITE, 0, staging, SECTOR, 1)) < 0) {
        return fail(2, "submit write", r);
    }
    r = drain(&done);
    if (r != PV_STATUS_READ_ONLY) {
        return fail(4, "the host accepted a write to a read-only disk", r);
    }
    if ((r = pv_blk_submit(&disk, PV_BLOCK_OP_DISCARD, 0, NULL, SECTOR, 2)) < 0) {
        return fail(2, "submit discard", r);
    }
    r = drain(&done);
    if (r != PV_STATUS_READ_ONLY) {
        return fail(4, "the host accepted a discard on a read-only disk", r);
    }
    if (pv_blk_write(&disk, 0, staging, SECTOR) != PV_STATUS_READ_ONLY) {
        return fail(4, "pv_blk_write on a read-only disk", 0);
    }
    pv_printf("blk: read-only disk: reads work, write and discard refused with PV_STATUS_READ_ONLY (%d)\n",
              PV_STATUS_READ_ONLY);
    return 0;
}

/* Timed I/O for bench/devices.sh: sequential 1 MiB writes and reads (16 per doorbell) over `mib` MiB, then
 * `rand` random 4 KiB reads and writes. Prints one "bench:" line per phase with bytes and nanoseconds. */
static int bench(void)
{
    uint64_t bytes = disk.sectors * SECTOR;
    uint64_t mib = pv_cmdline_u64("mib", 64);
    if (mib * (1u << 20) > bytes) {
        mib = bytes >> 20;
    }
    const uint32_t chunk = PV_BLOCK_MAX_TRANSFER;
    const uint32_t depth = STAGING_BYTES / PV_BLOCK_MAX_TRANSFER;
    for (uint32_t i = 0; i < STAGING_BYTES / 8; i++) {
        ((uint64_t *)staging)[i] = pattern(1, i, 0);
    }
    for (int write = 1; write >= 0; write--) {
        uint32_t done = 0;
        uint64_t t0 = pv_clock_monotonic_ns();
        for (uint64_t off = 0; off < mib << 20;) {
            for (uint32_t k = 0; k < depth && off < mib << 20; k++, off += chunk) {
                long r = pv_blk_submit(&disk, write ? PV_BLOCK_OP_WRITE : PV_BLOCK_OP_READ, off / SECTOR,
                                       staging + (size_t)k * chunk, chunk, off);
                if (r < 0) {
                    return fail(2, "bench submit", r);
                }
            }
            long r = drain(&done);
            if (r < 0) {
                return fail(2, "bench sequential", r);
            }
        }
        if (write) {
            long r = pv_blk_flush(&disk);
            if (r < 0) {
                return fail(2, "bench flush", r);
            }
        }
        pv_printf("bench: seq-%s bytes=%llu ns=%llu\n", write ? "write" : "read",
                  (unsigned long long)(mib << 20), (unsigned long long)(pv_clock_monotonic_ns() - t0));
    }
    uint64_t rand = pv_cmdline_u64("rand", 2048);
    uint64_t blocks = (mib << 20) / 4096;
    for (int write = 1; write >= 0; write--) {
        uint32_t done = 0;
        uint64_t t0 = pv_clock_monotonic_ns();
        for (uint64_t i = 0; i < rand;) {
            for (uint32_t k = 0; k < MAX_BATCH && i < rand; k++, i++) {
                uint64_t b = rng() % blocks;
                long r = pv_blk_submit(&disk, write ? PV_BLOCK_OP_WRITE : PV_BLOCK_OP_READ, b * 8,
                                       staging + (size_t)k * 4096, 4096, i);
                if (r < 0) {
                    return fail(2, "bench submit", r);
                }
            }
            long r = drain(&done);
            if (r < 0) {
                return fail(2, "bench random", r);
            }
        }
        pv_printf("bench: rand4k-%s bytes=%llu ns=%llu\n", write ? "write" : "read",
                  (unsigned long long)(rand * 4096), (unsigned long long)(pv_clock_monotonic_ns() - t0));
    }
    return 0;
}

int main(void)
{
    long r = pv_blk_open(&disk, "disk0");
    if (r < 0) {
        return fail(1, "no block device disk0", r);
    }
    pv_printf("blk: disk0 %llu sectors (%llu KiB)%s, ring of %u slots\n", (unsigned long long)disk.sectors,
              (unsigned long long)(disk.sectors / 2), disk.read_only ? ", read-only" : "", disk.ring.size);
    staging = pv_page_alloc(STAGING_BYTES / 4096);
    if (staging == NULL) {
        return fail(2, "no memory for the staging buffer", PV_STATUS_NO_MEMORY);
    }
    uint64_t seed = pv_cmdline_u64("seed", 1);
    rng_state = seed * 0x2545F4914F6CDD1Dull + 1;
    if (disk.read_only) {
        return read_only_test();
    }
    char mode[16];
    if (pv_cmdline_get("mode", mode, sizeof(mode)) >= 0 && strcmp(mode, "bench") == 0) {
        return bench();
    }

    uint64_t test_sectors = disk.sectors < MAX_TEST_SECTORS ? disk.sectors : MAX_TEST_SECTORS;
    if (test_sectors < 16) {
        return fail(1, "disk too small (need 8 KiB)", PV_STATUS_NO_SPACE);
    }
    static const uint32_t sizes[] = { 1, 2, 3, 7, 8, 15, 16, 64, 255, 256, 1024, 2048 };
    uint32_t requests = (uint32_t)pv_cmdline_u64("requests", 512);
    uint64_t written = 0;
    uint32_t completed = 0, batches = 0;

    /* 1. Random writes, batched: each batch fills the staging area or MAX_BATCH requests, then one kick. */
    for (uint32_t i = 0; i < requests;) {
        size_t used = 0;
        uint32_t in_batch = 0;
        while (i < requests && in_batch < MAX_BATCH) {
            uint32_t count = sizes[rng() % (sizeof(sizes) / sizeof(sizes[0]))];
            if (count > test_sectors) {
                count = (uint32_t)test_sectors;
            }
            if (used + (size_t)count * SECTOR > STAGING_BYTES) {
                break;
            }
            uint64_t sector = rng() % (test_sectors - count + 1);
            fill(seed, sector, staging + used, count);
            r = pv_blk_submit(&disk, PV_BLOCK_OP_WRITE, sector, staging + used, count * SECTOR, i);
            if (r < 0) {
                return fail(2, "submit", r);
            }
            for (uint32_t k = 0; k < count; k++) {
                covered[(sector + k) / 8] |= (uint8_t)(1u << ((sector + k) % 8));
            }
            used += (size_t)count * SECTOR;
            written += (uint64_t)count * SECTOR;
            in_batch++;
            i++;
        }
        r = drain(&completed);
        if (r < 0) {
            return fail(2, "write", r);
        }
        batches++;
    }
    if (completed != requests) {
        return fail(2, "completion count mismatch", (long)completed);
    }

    /* 2. Flush: the writes are durable before the host answers. */
    if ((r = pv_blk_flush(&disk)) < 0) {
        return fail(2, "flush", r);
    }

    /* 3. Read everything back (4 MiB at a time: 4 requests per doorbell) and verify the covered sectors. */
    uint64_t verified = 0;
    for (uint64_t s = 0; s < test_sectors;) {
        uint64_t n = test_sectors - s;
        if (n > STAGING_BYTES / SECTOR) {
            n = STAGING_BYTES / SECTOR;
        }
        r = pv_blk_read(&disk, s, staging, n * SECTOR);
        if (r < 0) {
            return fail(2, "read back", r);
        }
        for (uint64_t k = 0; k < n; k++) {
            uint64_t sec = s + k;
            if (covered[sec / 8] & (1u << (sec % 8))) {
                if (!check(seed, sec, staging + k * SECTOR)) {
                    pv_printf("blk: FAILED: sector %llu does not hold its pattern\n", (unsigned long long)sec);
                    return 3;
                }
                verified++;
            }
        }
        s += n;
    }

    /* 4. Discard a range: it reads back as zeros. */
    uint64_t dsec = rng() % (test_sectors - 8);
    if ((r = pv_blk_discard(&disk, dsec, 8 * SECTOR)) < 0) {
        return fail(2, "discard", r);
    }
    if ((r = pv_blk_read(&disk, dsec, staging, 8 * SECTOR)) < 0) {
        return fail(2, "read after discard", r);
    }
    for (uint32_t k = 0; k < 8 * SECTOR; k++) {
        if (staging[k] != 0) {
            return fail(3, "discarded sectors do not read as zeros", (long)k);
        }
    }
    /* 5. Out-of-range requests are refused. */
    r = pv_blk_read(&disk, disk.sectors, staging, SECTOR);
    if (r != PV_STATUS_OUT_OF_RANGE) {
        return fail(3, "a read past the end was not refused with PV_STATUS_OUT_OF_RANGE", r);
    }

    pv_printf("blk: %u requests in %u batches, %llu KiB written, %llu sectors verified, flush ok, discard ok\n",
              requests, batches, (unsigned long long)(written / 1024), (unsigned long long)verified);
    pv_printf("blk: OK seed=%llu\n", (unsigned long long)seed);
    return 0;
}
