/*
 * kv: a small key-value service. Requests arrive as lines on the paravirtual console "console0"; the data lives
 * on the block device "disk0" and survives restarts.
 *
 * Protocol (one request per line, one response line each):
 *     SET key value   -> OK              (value: the rest of the line, may contain spaces)
 *     GET key         -> VALUE value | NOTFOUND
 *     DEL key         -> OK | NOTFOUND
 *     COUNT           -> COUNT n
 *     QUIT            -> BYE, and the guest exits 0
 * Errors answer "ERR <reason>". At start the service prints "READY <n> keys". When the console's input ends
 * (PV_CONS_EOF) the guest exits 0, as after QUIT.
 *
 * Disk format (fixed slots, open addressing): sector 0 is the header {magic "PVKV0001", slot count, FNV-1a of
 * the header}; slot i is sector 1 + i {magic, state (0 empty, 1 used, 2 deleted), key length, value length,
 * key[64], value[400], FNV-1a of the slot}. A key lives in the first free slot of its probe sequence
 * (hash(key) + i) mod count; deleted slots keep probing going. Each SET/DEL writes one sector and flushes
 * before it answers OK. A slot with a bad checksum is treated as deleted and counted at start.
 */
#include <paravirt/paravirt.h>

PV_DEVICE_MANIFEST(PV_DEVICE(PV_DEVICE_KIND_CONSOLE, "console0"), PV_DEVICE(PV_DEVICE_KIND_BLOCK, "disk0"));

#define SECTOR PV_BLOCK_SECTOR_SIZE
#define KEY_MAX 63
#define VALUE_MAX 399
#define MAX_SLOTS 1024u

typedef struct kv_header {
    char magic[8];
    uint32_t slots;
    uint32_t checksum;
    uint8_t pad[SECTOR - 16];
} kv_header;

typedef struct kv_slot {
    uint32_t magic;
    uint32_t state;
    uint32_t key_len;
    uint32_t value_len;
    char key[64];
    char value[400];
    uint8_t pad[SECTOR - 16 - 64 - 400 - 4];
    uint32_t checksum;
} kv_slot;

_Static_assert(sizeof(kv_header) == SECTOR, "header is one sector");
_Static_assert(sizeof(kv_slot) == SECTOR, "slot is one sector");

#define SLOT_MAGIC 0x4B565331u /* "KVS1" */
enum { EMPTY = 0, USED = 1, DELETED = 2 };

static pv_cons con;
static pv_blk disk;
static kv_slot table[MAX_SLOTS] __attribute__((aligned(4096)));
static kv_header header __attribute__((aligned(4096)));
static uint32_t slot_count;

static uint32_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 16777619u;
    }
    return h;
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = pv_vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    pv_cons_write(&con, line, (size_t)n);
}

static long store_slot(uint32_t i)
{
    table[i].magic = SLOT_MAGIC;
    table[i].checksum = fnv1a(&table[i], offsetof(kv_slot, checksum));
    long r = pv_blk_write(&disk, 1 + i, &table[i], SECTOR);
    if (r >= 0) {
        r = pv_blk_flush(&disk);
    }
    return r;
}

/* Writes slot i through to the disk and answers the command: OK, or the disk's error. Returns 0 (keep serving). */
static int store_and_reply(uint32_t i)
{
    long r = store_slot(i);
    if (r < 0) {
        reply("ERR disk %ld", r);
    } else {
        reply("OK");
    }
    return 0;
}

/* Loads or formats the store; returns the number of keys or a negative status. */
static long load(uint32_t *corrupt)
{
    long r = pv_blk_read(&disk, 0, &header, SECTOR);
    if (r < 0) {
        return r;
    }
    int valid = memcmp(header.magic, "PVKV0001", 8) == 0 && header.slots > 0 && header.slots <= MAX_SLOTS &&
                header.checksum == fnv1a(&header, offsetof(kv_header, checksum));
    if (!valid) {
        uint64_t fit = disk.sectors - 1;
        slot_count = fit < MAX_SLOTS ? (uint32_t)fit : MAX_SLOTS;
        memset(table, 0, sizeof(table));
        r = pv_blk_write(&disk, 1, table, (size_t)slot_count * SECTOR);
        if (r < 0) {
            return r;
        }
        memset(&header, 0, sizeof(header));
        memcpy(header.magic, "PVKV0001", 8);
        header.slots = slot_count;
        header.checksum = fnv1a(&header, offsetof(kv_header, checksum));
        if ((r = pv_blk_write(&disk, 0, &header, SECTOR)) < 0 || (r = pv_blk_flush(&disk)) < 0) {
            return r;
        }
        pv_printf("kv: formatted disk0 with %u slots\n", slot_count);
        return 0;
    }
    slot_count = header.slots;
    if ((r = pv_blk_read(&disk, 1, table, (size_t)slot_count * SECTOR)) < 0) {
        return r;
    }
    long keys = 0;
    for (uint32_t i = 0; i < slot_count; i++) {
        kv_slot *s = &table[i];
        if (s->magic == 0 && s->state == EMPTY) {
            continue; /* never written */
        }
        if (s->magic != SLOT_MAGIC || s->checksum != fnv1a(s, offsetof(kv_slot, checksum)) || s->state > DELETED ||
            s->key_len > KEY_MAX || s->value_len > VALUE_MAX) {
            (*corrupt)++;
            memset(s, 0, sizeof(*s));
            s->state = DELETED; /* keep probe sequences through it intact */
            continue;
        }
        s->value[s->value_len] = 0;
        s->key[s->key_len] = 0;
        keys += s->state == USED;
    }
    return keys;
}

/* Finds `key`: returns its slot, or -1 with *free_slot = the first reusable slot on its path (or -1 when full). */
static long find(const char *key, size_t len, long *free_slot)
{
    uint32_t h = fnv1a(key, len) % slot_count;
    *free_slot = -1;
    for (uint32_t i = 0; i < slot_count; i++) {
        uint32_t at = (h + i) % slot_count;
        kv_slot *s = &table[at];
        if (s->state == EMPTY) {
            if (*free_slot < 0) {
                *free_slot = at;
            }
            return -1;
        }
        if (s->state == DELETED) {
            if (*free_slot < 0) {
                *free_slot = at;
            }
            continue;
        }
        if (s->key_len == len && memcmp(s->key, key, len) == 0) {
            return at;
        }
    }
    return -1;
}

/* Splits "WORD rest": returns the length of the first word, and *rest points past the following spaces. */
static size_t word(const char *s, const char **rest)
{
    size_t n = 0;
    while (s[n] != 0 && s[n] != ' ') {
        n++;
    }
    const char *r = s + n;
    while (*r == ' ') {
        r++;
    }
    *rest = r;
    return n;
}

static int handle(const char *line)
{
    const char *args;
    size_t cmd_len = word(line, &args);
    const char *rest;
    size_t key_len = word(args, &rest);
    if (cmd_len == 0) {
        return 0;
    }
    if (cmd_len == 4 && memcmp(line, "QUIT", 4) == 0) {
        reply("BYE");
        return 1;
    }
    if (cmd_len == 5 && memcmp(line, "COUNT", 5) == 0) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < slot_count; i++) {
            n += table[i].state == USED;
        }
        reply("COUNT %u", n);
        return 0;
    }
    int is_set = cmd_len == 3 && memcmp(line, "SET", 3) == 0;
    int is_get = cmd_len == 3 && memcmp(line, "GET", 3) == 0;
    int is_del = cmd_len == 3 && memcmp(line, "DEL", 3) == 0;
    if (!is_set && !is_get && !is_del) {
        reply("ERR unknown command");
        return 0;
    }
    if (key_len == 0 || key_len > KEY_MAX) {
        reply("ERR key must be 1..%d bytes", KEY_MAX);
        return 0;
    }
    long free_slot;
    long at = find(args, key_len, &free_slot);
    if (is_get) {
        if (at < 0) {
            reply("NOTFOUND");
        } else {
            reply("VALUE %s", table[at].value);
        }
        return 0;
    }
    if (is_del) {
        if (at < 0) {
            reply("NOTFOUND");
            return 0;
        }
        memset(&table[at], 0, sizeof(table[at]));
        table[at].state = DELETED;
        return store_and_reply((uint32_t)at);
    }
    size_t value_len = strlen(rest);
    if (value_len > VALUE_MAX) {
        reply("ERR value longer than %d bytes", VALUE_MAX);
        return 0;
    }
    if (at < 0) {
        if (free_slot < 0) {
            reply("ERR store full");
            return 0;
        }
        at = free_slot;
    }
    kv_slot *s = &table[at];
    memset(s, 0, sizeof(*s));
    s->state = USED;
    s->key_len = (uint32_t)key_len;
    s->value_len = (uint32_t)value_len;
    memcpy(s->key, args, key_len);
    memcpy(s->value, rest, value_len);
    return store_and_reply((uint32_t)at);
}

int main(void)
{
    long r = pv_cons_attach(&con, "console0");
    if (r < 0) {
        pv_printf("kv: no console console0 (status %ld)\n", r);
        return 1;
    }
    if ((r = pv_blk_open(&disk, "disk0")) < 0) {
        reply("ERR no disk (status %ld)", r);
        return 1;
    }
    if (disk.sectors < 2) {
        reply("ERR disk too small");
        return 1;
    }
    uint32_t corrupt = 0;
    long keys = load(&corrupt);
    if (keys < 0) {
        reply("ERR loading the store failed (status %ld)", keys);
        return 2;
    }
    if (corrupt != 0) {
        pv_printf("kv: %u corrupt slots dropped\n", corrupt);
    }
    reply("READY %ld keys", keys);
    for (;;) {
        char line[512];
        r = pv_cons_read_line(&con, line, sizeof(line), PV_DEADLINE_NEVER);
        if (r == PV_CONS_EOF) {
            return 0; /* the input ended: as QUIT, without the BYE */
        }
        if (r < 0) {
            pv_printf("kv: console read failed (status %ld)\n", r);
            return 2;
        }
        if (handle(line)) {
            return 0;
        }
    }
}
