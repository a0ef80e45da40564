/*
 * msgpack.c: the MessagePack reader and writer of paravirt/msgpack.h. Big-endian on the wire; every length is
 * checked against the bytes that remain before it is used.
 */
#include <paravirt/paravirt.h>

/* ---- reader ------------------------------------------------------------------------------------------------ */

void pv_mp_reader_init(pv_mp_reader *r, const void *data, size_t length)
{
    r->pos = data;
    r->end = (const uint8_t *)data + length;
    r->error = 0;
    r->count = 0;
}

static void pv_mp_fail(pv_mp_reader *r, long status)
{
    if (r->error == 0) {
        r->error = status;
    }
}

static bool pv_mp_need(pv_mp_reader *r, size_t n)
{
    if (r->error != 0) {
        return false;
    }
    if ((size_t)(r->end - r->pos) < n) {
        pv_mp_fail(r, PV_STATUS_PROTOCOL);
        return false;
    }
    return true;
}

static uint64_t pv_mp_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* A fixed-size value of n bytes that starts with `marker`: its big-endian payload (the n - 1 bytes after the marker),
   consumed; or 0 with the reader failed (PROTOCOL when short, INVALID when another type is next). */
static uint64_t pv_mp_read_fixed(pv_mp_reader *r, uint8_t marker, int n)
{
    if (!pv_mp_need(r, (size_t)n)) {
        return 0;
    }
    if (*r->pos != marker) {
        pv_mp_fail(r, PV_STATUS_INVALID);
        return 0;
    }
    uint64_t v = pv_mp_be(r->pos + 1, n - 1);
    r->pos += n;
    return v;
}

pv_mp_type pv_mp_peek(const pv_mp_reader *r)
{
    if (r->error != 0 || r->pos >= r->end) {
        return PV_MP_NONE;
    }
    uint8_t b = *r->pos;
    if (b <= 0x7f || b >= 0xe0) {
        return PV_MP_INT;
    }
    if (b <= 0x8f) {
        return PV_MP_MAP;
    }
    if (b <= 0x9f) {
        return PV_MP_ARRAY;
    }
    if (b <= 0xbf) {
        return PV_MP_STR;
    }
    switch (b) {
    case 0xc0: return PV_MP_NIL;
    case 0xc2: case 0xc3: return PV_MP_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return PV_MP_BIN;
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return PV_MP_EXT;
    case 0xca: return PV_MP_FLOAT32;
    case 0xcb: return PV_MP_FLOAT64;
    case 0xcf:
        return (r->end - r->pos >= 9 && r->pos[1] >= 0x80) ? PV_MP_UINT : PV_MP_INT;
    case 0xcc: case 0xcd: case 0xce: case 0xd0: case 0xd1: case 0xd2: case 0xd3: return PV_MP_INT;
    case 0xd9: case 0xda: case 0xdb: return PV_MP_STR;
    case 0xdc: case 0xdd: return PV_MP_ARRAY;
    case 0xde: case 0xdf: return PV_MP_MAP;
    default: return PV_MP_NONE; /* 0xc1 */
    }
}

bool pv_mp_at_end(const pv_mp_reader *r)
{
    return r->error == 0 && r->pos == r->end;
}

void pv_mp_read_nil(pv_mp_reader *r)
{
    pv_mp_read_fixed(r, 0xc0, 1);
}

bool pv_mp_read_bool(pv_mp_reader *r)
{
    if (!pv_mp_need(r, 1)) {
        return false;
    }
    uint8_t b = *r->pos;
    if (b != 0xc2 && b != 0xc3) {
        pv_mp_fail(r, PV_STATUS_INVALID);
        return false;
    }
    r->pos++;
    return b == 0xc3;
}

/* Reads any integer: *negative tells whether the value is the int64_t in *value or the uint64_t in *value. */
static bool pv_mp_read_integer(pv_mp_reader *r, uint64_t *value, bool *negative)
{
    if (!pv_mp_need(r, 1)) {
        return false;
    }
    uint8_t b = *r->pos;
    *negative = false;
    if (b <= 0x7f) {
        r->pos++;
        *value = b;
        return true;
    }
    if (b >= 0xe0) {
        r->pos++;
        *value = (uint64_t)(int64_t)(int8_t)b;
        *negative = true;
        return true;
    }
    int n;
    bool is_signed;
    switch (b) {
    case 0xcc: n = 1; is_signed = false; break;
    case 0xcd: n = 2; is_signed = false; break;
    case 0xce: n = 4; is_signed = false; break;
    case 0xcf: n = 8; is_signed = false; break;
    case 0xd0: n = 1; is_signed = true; break;
    case 0xd1: n = 2; is_signed = true; break;
    case 0xd2: n = 4; is_signed = true; break;
    case 0xd3: n = 8; is_signed = true; break;
    default:
        pv_mp_fail(r, PV_STATUS_INVALID);
        return false;
    }
    if (!pv_mp_need(r, 1 + (size_t)n)) {
        return false;
    }
    uint64_t v = pv_mp_be(r->pos + 1, n);
    r->pos += 1 + n;
    if (is_signed) {
        int shift = 64 - 8 * n;
        int64_t s = (int64_t)(v << shift) >> shift; /* sign-extend */
        *value = (uint64_t)s;
        *negative = s < 0;
    } else {
        *value = v;
    }
    return true;
}

int64_t pv_mp_read_int(pv_mp_reader *r)
{
    uint64_t v;
    bool negative;
    if (!pv_mp_read_integer(r, &v, &negative)) {
        return 0;
    }
    if (!negative && v > (uint64_t)INT64_MAX) {
        pv_mp_fail(r, PV_STATUS_INVALID);
        return 0;
    }
    return (int64_t)v;
}

uint64_t pv_mp_read_uint(pv_mp_reader *r)
{
    uint64_t v;
    bool negative;
    if (!pv_mp_read_integer(r, &v, &negative)) {
        return 0;
    }
    if (negative) {
        pv_mp_fail(r, PV_STATUS_INVALID);
        return 0;
    }
    return v;
}

float pv_mp_read_float(pv_mp_reader *r)
{
    uint32_t bits = (uint32_t)pv_mp_read_fixed(r, 0xca, 5);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

double pv_mp_read_double(pv_mp_reader *r)
{
    uint64_t bits = pv_mp_read_fixed(r, 0xcb, 9);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Reads a length-prefixed header: fix (low bits of b & fixmask when b in [fixlo, fixhi]) or 8/16/32-bit lengths
   after the markers m8/m16/m32 (0 when the width does not exist). Returns false (and fails) on a type mismatch. */
static bool pv_mp_header(pv_mp_reader *r, uint8_t fixlo, uint8_t fixhi, uint8_t m8, uint8_t m16, uint8_t m32, uint32_t *length)
{
    if (!pv_mp_need(r, 1)) {
        return false;
    }
    uint8_t b = *r->pos;
    int n;
    if (fixhi != 0 && b >= fixlo && b <= fixhi) {
        *length = b - fixlo;
        r->pos++;
        return true;
    }
    if (m8 != 0 && b == m8) {
        n = 1;
    } else if (b == m16) {
        n = 2;
    } else if (b == m32) {
        n = 4;
    } else {
        pv_mp_fail(r, PV_STATUS_INVALID);
        return false;
    }
    if (!pv_mp_need(r, 1 + (size_t)n)) {
        return false;
    }
    *length = (uint32_t)pv_mp_be(r->pos + 1, n);
    r->pos += 1 + n;
    return true;
}

static const uint8_t *pv_mp_take(pv_mp_reader *r, uint32_t length)
{
    if (!pv_mp_need(r, length)) {
        return NULL;
    }
    const uint8_t *p = r->pos;
    r->pos += length;
    return p;
}

/* A str or bin value (its header markers given, see pv_mp_header): its bytes in place and *length, or NULL (*length 0)
   with the reader failed. */
static const uint8_t *pv_mp_read_bytes(pv_mp_reader *r, uint8_t fixlo, uint8_t fixhi, uint8_t m8, uint8_t m16, uint8_t m32,
                                       uint32_t *length)
{
    uint32_t n = 0;
    *length = 0;
    if (!pv_mp_header(r, fixlo, fixhi, m8, m16, m32, &n)) {
        return NULL;
    }
    const uint8_t *p = pv_mp_take(r, n);
    if (p != NULL) {
        *length = n;
    }
    return p;
}

const char *pv_mp_read_str(pv_mp_reader *r, uint32_t *length)
{
    return (const char *)pv_mp_read_bytes(r, 0xa0, 0xbf, 0xd9, 0xda, 0xdb, length);
}

long pv_mp_read_cstr(pv_mp_reader *r, char *buf, size_t cap)
{
    uint32_t n;
    const char *s = pv_mp_read_str(r, &n);
    if (s == NULL) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return r->error;
    }
    if ((size_t)n >= cap) {
        pv_mp_fail(r, PV_STATUS_TOO_BIG);
        if (cap > 0) {
            buf[0] = '\0';
        }
        return PV_STATUS_TOO_BIG;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return (long)n;
}

const uint8_t *pv_mp_read_bin(pv_mp_reader *r, uint32_t *length)
{
    return pv_mp_read_bytes(r, 0, 0, 0xc4, 0xc5, 0xc6, length);
}

uint32_t pv_mp_read_array(pv_mp_reader *r)
{
    uint32_t n = 0;
    if (!pv_mp_header(r, 0x90, 0x9f, 0, 0xdc, 0xdd, &n)) {
        return 0;
    }
    if (n > (size_t)(r->end - r->pos)) { /* every element takes at least a byte */
        pv_mp_fail(r, PV_STATUS_PROTOCOL);
        return 0;
    }
    return n;
}

uint32_t pv_mp_read_map(pv_mp_reader *r)
{
    uint32_t n = 0;
    if (!pv_mp_header(r, 0x80, 0x8f, 0, 0xde, 0xdf, &n)) {
        return 0;
    }
    if ((uint64_t)n * 2 > (size_t)(r->end - r->pos)) {
        pv_mp_fail(r, PV_STATUS_PROTOCOL);
        return 0;
    }
    return n;
}

const uint8_t *pv_mp_read_ext(pv_mp_reader *r, int8_t *type, uint32_t *length)
{
    *type = 0;
    *length = 0;
    if (!pv_mp_need(r, 2)) {
        return NULL;
    }
    uint8_t b = *r->pos;
    uint32_t n;
    if (b >= 0xd4 && b <= 0xd8) {
        n = 1u << (b - 0xd4);
        r->pos++;
    } else if (!pv_mp_header(r, 0, 0, 0xc7, 0xc8, 0xc9, &n)) {
        return NULL;
    }
    if (!pv_mp_need(r, 1)) {
        return NULL;
    }
    int8_t t = (int8_t)*r->pos++;
    const uint8_t *p = pv_mp_take(r, n);
    if (p != NULL) {
        *type = t;
        *length = n;
    }
    return p;
}

void pv_mp_read_timestamp(pv_mp_reader *r, int64_t *seconds, uint32_t *nanoseconds)
{
    int8_t type;
    uint32_t n;
    *seconds = 0;
    *nanoseconds = 0;
    const uint8_t *p = pv_mp_read_ext(r, &type, &n);
    if (p == NULL) {
        return;
    }
    if (type != -1) {
        pv_mp_fail(r, PV_STATUS_INVALID);
        return;
    }
    if (n == 4) {
        *seconds = (int64_t)pv_mp_be(p, 4);
    } else if (n == 8) {
        uint64_t v = pv_mp_be(p, 8);
        *nanoseconds = (uint32_t)(v >> 34);
        *seconds = (int64_t)(v & 0x3ffffffffull);
    } else if (n == 12) {
        *nanoseconds = (uint32_t)pv_mp_be(p, 4);
        *seconds = (int64_t)pv_mp_be(p + 4, 8);
    } else {
        pv_mp_fail(r, PV_STATUS_PROTOCOL);
    }
}

static void pv_mp_skip_depth(pv_mp_reader *r, int depth)
{
    if (depth > PV_MP_MAX_DEPTH) {
        pv_mp_fail(r, PV_STATUS_PROTOCOL);
        return;
    }
    uint32_t n;
    int8_t t;
    switch (pv_mp_peek(r)) {
    case PV_MP_NIL: pv_mp_read_nil(r); break;
    case PV_MP_BOOL: pv_mp_read_bool(r); break;
    case PV_MP_INT: pv_mp_read_int(r); break;
    case PV_MP_UINT: pv_mp_read_uint(r); break;
    case PV_MP_FLOAT32: pv_mp_read_float(r); break;
    case PV_MP_FLOAT64: pv_mp_read_double(r); break;
    case PV_MP_STR: pv_mp_read_str(r, &n); break;
    case PV_MP_BIN: pv_mp_read_bin(r, &n); break;
    case PV_MP_EXT: pv_mp_read_ext(r, &t, &n); break;
    case PV_MP_ARRAY:
        n = pv_mp_read_array(r);
        for (uint32_t i = 0; i < n && r->error == 0; i++) {
            pv_mp_skip_depth(r, depth + 1);
        }
        break;
    case PV_MP_MAP:
        n = pv_mp_read_map(r);
        for (uint32_t i = 0; i < 2 * n && r->error == 0; i++) {
            pv_mp_skip_depth(r, depth + 1);
        }
        break;
    default:
        pv_mp_fail(r, PV_STATUS_PROTOCOL);
        break;
    }
}

void pv_mp_skip(pv_mp_reader *r)
{
    pv_mp_skip_depth(r, 0);
}

bool pv_mp_read_key(pv_mp_reader *r, const char *key)
{
    uint32_t n;
    const char *s = pv_mp_read_str(r, &n);
    return s != NULL && strlen(key) == n && memcmp(s, key, n) == 0;
}

/* ---- writer ------------------------------------------------------------------------------------------------ */

void pv_mp_writer_init(pv_mp_writer *w, void *buffer, size_t capacity)
{
    w->start = buffer;
    w->pos = buffer;
    w->end = (uint8_t *)buffer + capacity;
    w->error = 0;
}

size_t pv_mp_writer_length(const pv_mp_writer *w)
{
    return (size_t)(w->pos - w->start);
}

static uint8_t *pv_mp_room(pv_mp_writer *w, size_t n)
{
    if (w->error != 0) {
        return NULL;
    }
    if ((size_t)(w->end - w->pos) < n) {
        w->error = PV_STATUS_TOO_BIG;
        return NULL;
    }
    uint8_t *p = w->pos;
    w->pos += n;
    return p;
}

static void pv_mp_put(pv_mp_writer *w, uint8_t marker, uint64_t v, int n)
{
    uint8_t *p = pv_mp_room(w, 1 + (size_t)n);
    if (p == NULL) {
        return;
    }
    p[0] = marker;
    for (int i = n; i >= 1; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

void pv_mp_write_nil(pv_mp_writer *w)
{
    pv_mp_put(w, 0xc0, 0, 0);
}

void pv_mp_write_bool(pv_mp_writer *w, bool value)
{
    pv_mp_put(w, value ? 0xc3 : 0xc2, 0, 0);
}

void pv_mp_write_uint(pv_mp_writer *w, uint64_t v)
{
    if (v <= 0x7f) {
        pv_mp_put(w, (uint8_t)v, 0, 0);
    } else if (v <= 0xff) {
        pv_mp_put(w, 0xcc, v, 1);
    } else if (v <= 0xffff) {
        pv_mp_put(w, 0xcd, v, 2);
    } else if (v <= 0xffffffffu) {
        pv_mp_put(w, 0xce, v, 4);
    } else {
        pv_mp_put(w, 0xcf, v, 8);
    }
}

void pv_mp_write_int(pv_mp_writer *w, int64_t v)
{
    if (v >= 0) {
        pv_mp_write_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        pv_mp_put(w, (uint8_t)v, 0, 0);
    } else if (v >= INT8_MIN) {
        pv_mp_put(w, 0xd0, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        pv_mp_put(w, 0xd1, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        pv_mp_put(w, 0xd2, (uint64_t)v, 4);
    } else {
        pv_mp_put(w, 0xd3, (uint64_t)v, 8);
    }
}

void pv_mp_write_float(pv_mp_writer *w, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    pv_mp_put(w, 0xca, bits, 4);
}

void pv_mp_write_double(pv_mp_writer *w, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    pv_mp_put(w, 0xcb, bits, 8);
}

static void pv_mp_bytes(pv_mp_writer *w, const void *data, size_t length)
{
    uint8_t *p = pv_mp_room(w, length);
    if (p != NULL && length != 0) {
        memcpy(p, data, length);
    }
}

/* A length or count header in its smallest form: the fix form (fix | n) when n <= fixmax (fixmax 0: the type has
   none), else m8 (0: none), m16 or m32 with an 8-, 16- or 32-bit big-endian n. The writer's side of pv_mp_header. */
static void pv_mp_put_header(pv_mp_writer *w, uint8_t fix, uint32_t fixmax, uint8_t m8, uint8_t m16, uint8_t m32, uint32_t n)
{
    if (fixmax != 0 && n <= fixmax) {
        pv_mp_put(w, (uint8_t)(fix | n), 0, 0);
    } else if (m8 != 0 && n <= 0xff) {
        pv_mp_put(w, m8, n, 1);
    } else if (n <= 0xffff) {
        pv_mp_put(w, m16, n, 2);
    } else {
        pv_mp_put(w, m32, n, 4);
    }
}

void pv_mp_write_str(pv_mp_writer *w, const char *s, uint32_t length)
{
    pv_mp_put_header(w, 0xa0, 31, 0xd9, 0xda, 0xdb, length);
    pv_mp_bytes(w, s, length);
}

void pv_mp_write_cstr(pv_mp_writer *w, const char *s)
{
    pv_mp_write_str(w, s, (uint32_t)strlen(s));
}

void pv_mp_write_bin(pv_mp_writer *w, const void *data, uint32_t length)
{
    pv_mp_put_header(w, 0, 0, 0xc4, 0xc5, 0xc6, length);
    pv_mp_bytes(w, data, length);
}

void pv_mp_write_array(pv_mp_writer *w, uint32_t count)
{
    pv_mp_put_header(w, 0x90, 15, 0, 0xdc, 0xdd, count);
}

void pv_mp_write_map(pv_mp_writer *w, uint32_t count)
{
    pv_mp_put_header(w, 0x80, 15, 0, 0xde, 0xdf, count);
}

void pv_mp_write_ext(pv_mp_writer *w, int8_t type, const void *data, uint32_t length)
{
    switch (length) {
    case 1: pv_mp_put(w, 0xd4, 0, 0); break;
    case 2: pv_mp_put(w, 0xd5, 0, 0); break;
    case 4: pv_mp_put(w, 0xd6, 0, 0); break;
    case 8: pv_mp_put(w, 0xd7, 0, 0); break;
    case 16: pv_mp_put(w, 0xd8, 0, 0); break;
    default:
        if (length <= 0xff) {
            pv_mp_put(w, 0xc7, length, 1);
        } else if (length <= 0xffff) {
            pv_mp_put(w, 0xc8, length, 2);
        } else {
            pv_mp_put(w, 0xc9, length, 4);
        }
        break;
    }
    pv_mp_put(w, (uint8_t)type, 0, 0);
    pv_mp_bytes(w, data, length);
}

void pv_mp_write_timestamp(pv_mp_writer *w, int64_t seconds, uint32_t nanoseconds)
{
    uint8_t b[12];
    if (nanoseconds == 0 && seconds >= 0 && seconds <= 0xffffffffll) {
        for (int i = 0; i < 4; i++) {
            b[i] = (uint8_t)((uint64_t)seconds >> (24 - 8 * i));
        }
        pv_mp_write_ext(w, -1, b, 4);
    } else if (seconds >= 0 && seconds <= 0x3ffffffffll) {
        uint64_t v = ((uint64_t)nanoseconds << 34) | (uint64_t)seconds;
        for (int i = 0; i < 8; i++) {
            b[i] = (uint8_t)(v >> (56 - 8 * i));
        }
        pv_mp_write_ext(w, -1, b, 8);
    } else {
        for (int i = 0; i < 4; i++) {
            b[i] = (uint8_t)(nanoseconds >> (24 - 8 * i));
        }
        for (int i = 0; i < 8; i++) {
            b[4 + i] = (uint8_t)((uint64_t)seconds >> (56 - 8 * i));
        }
        pv_mp_write_ext(w, -1, b, 12);
    }
}

void pv_mp_write_raw(pv_mp_writer *w, const void *data, size_t length)
{
    pv_mp_bytes(w, data, length);
}
