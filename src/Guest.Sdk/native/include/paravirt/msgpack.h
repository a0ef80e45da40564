/*
 * paravirt/msgpack.h: a small MessagePack (msgpack.org) reader and writer for guests, over caller-owned buffers.
 *
 * Every type family of the specification: nil, bool, integers (fixint, int/uint 8-64), float 32/64, str, bin,
 * array, map and ext (fixext 1-16, ext 8/16/32, including the timestamp extension -1). Nothing is allocated.
 *
 * Errors are sticky: a read of the wrong type, past the end, or a write past the buffer sets `error` (a negative
 * PV_STATUS_*: PV_STATUS_INVALID for a type mismatch, PV_STATUS_PROTOCOL for malformed or truncated input,
 * PV_STATUS_TOO_BIG when the writer is full) and every later call returns zeros / does nothing. So a function may
 * read all its arguments and check `error` once.
 *
 * Floating point: values are copied bit for bit (no arithmetic), so float64 and float32 are distinct types here:
 * pv_mp_read_double reads only float64, pv_mp_read_float only float32.
 */
#ifndef PARAVIRT_MSGPACK_H
#define PARAVIRT_MSGPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The type of the next value (pv_mp_peek). */
typedef enum pv_mp_type {
    PV_MP_NONE = 0, /* end of input or an error */
    PV_MP_NIL,
    PV_MP_BOOL,
    PV_MP_INT,      /* an integer that fits int64_t */
    PV_MP_UINT,     /* an unsigned integer above INT64_MAX */
    PV_MP_FLOAT32,
    PV_MP_FLOAT64,
    PV_MP_STR,
    PV_MP_BIN,
    PV_MP_ARRAY,
    PV_MP_MAP,
    PV_MP_EXT,
} pv_mp_type;

/* Deepest nesting pv_mp_skip follows (deeper input is an error, never a stack overflow). */
#define PV_MP_MAX_DEPTH 32

typedef struct pv_mp_reader {
    const uint8_t *pos;
    const uint8_t *end;
    long error;     /* 0, or the first error's PV_STATUS_* */
    uint32_t count; /* for a guest function's arguments: how many there are (the dispatcher read the array header) */
} pv_mp_reader;

typedef struct pv_mp_writer {
    uint8_t *start;
    uint8_t *pos;
    uint8_t *end;
    long error;     /* 0, or PV_STATUS_TOO_BIG */
} pv_mp_writer;

void pv_mp_reader_init(pv_mp_reader *r, const void *data, size_t length);
pv_mp_type pv_mp_peek(const pv_mp_reader *r);
/* True when every byte was read without error. */
bool pv_mp_at_end(const pv_mp_reader *r);

void pv_mp_read_nil(pv_mp_reader *r);
bool pv_mp_read_bool(pv_mp_reader *r);
int64_t pv_mp_read_int(pv_mp_reader *r);   /* any integer encoding whose value fits int64_t */
uint64_t pv_mp_read_uint(pv_mp_reader *r); /* any integer encoding whose value is >= 0 */
float pv_mp_read_float(pv_mp_reader *r);
double pv_mp_read_double(pv_mp_reader *r);
/* The string's bytes (not NUL-terminated, pointing into the input) and their count in *length. */
const char *pv_mp_read_str(pv_mp_reader *r, uint32_t *length);
/* Copies a string into buf as a NUL-terminated C string; PV_STATUS_TOO_BIG (and the error) when it does not fit. */
long pv_mp_read_cstr(pv_mp_reader *r, char *buf, size_t cap);
const uint8_t *pv_mp_read_bin(pv_mp_reader *r, uint32_t *length);
uint32_t pv_mp_read_array(pv_mp_reader *r); /* the element count; the elements follow */
uint32_t pv_mp_read_map(pv_mp_reader *r);   /* the pair count; key, value, key, value ... follow */
const uint8_t *pv_mp_read_ext(pv_mp_reader *r, int8_t *type, uint32_t *length);
/* A timestamp extension (-1): seconds and nanoseconds since the Unix epoch. */
void pv_mp_read_timestamp(pv_mp_reader *r, int64_t *seconds, uint32_t *nanoseconds);
/* Skips one value, collections included. */
void pv_mp_skip(pv_mp_reader *r);
/* Reads a string and compares it with a C string (for map keys). */
bool pv_mp_read_key(pv_mp_reader *r, const char *key);

void pv_mp_writer_init(pv_mp_writer *w, void *buffer, size_t capacity);
size_t pv_mp_writer_length(const pv_mp_writer *w);
void pv_mp_write_nil(pv_mp_writer *w);
void pv_mp_write_bool(pv_mp_writer *w, bool value);
void pv_mp_write_int(pv_mp_writer *w, int64_t value);   /* the shortest encoding */
void pv_mp_write_uint(pv_mp_writer *w, uint64_t value); /* the shortest encoding */
void pv_mp_write_float(pv_mp_writer *w, float value);
void pv_mp_write_double(pv_mp_writer *w, double value);
void pv_mp_write_str(pv_mp_writer *w, const char *s, uint32_t length);
void pv_mp_write_cstr(pv_mp_writer *w, const char *s);
void pv_mp_write_bin(pv_mp_writer *w, const void *data, uint32_t length);
void pv_mp_write_array(pv_mp_writer *w, uint32_t count);
void pv_mp_write_map(pv_mp_writer *w, uint32_t count);
void pv_mp_write_ext(pv_mp_writer *w, int8_t type, const void *data, uint32_t length);
void pv_mp_write_timestamp(pv_mp_writer *w, int64_t seconds, uint32_t nanoseconds);
/* Copies one already encoded value (e.g. read with pv_mp_reader and pv_mp_skip). */
void pv_mp_write_raw(pv_mp_writer *w, const void *data, size_t length);

#ifdef __cplusplus
}
#endif

#endif /* PARAVIRT_MSGPACK_H */
