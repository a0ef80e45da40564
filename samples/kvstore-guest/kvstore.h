/*
 * kvstore.h: the protocol of the sample key-value device (samples/kvstore-host/KvStoreDevice.cs is the host half).
 *
 * A user-defined device type (>= PV_DEVICE_TYPE_USER_FIRST), version 1, one queue: a ring of 64-byte slots, each
 * holding a kvstore_request from the guest or the kvstore_response the host writes over it. Keys and values live in
 * guest buffers the request names by guest-physical address; the host copies each once. The configuration
 * (pv_device_config) is a kvstore_config.
 */
#ifndef KVSTORE_H
#define KVSTORE_H

#include <stdint.h>
#include <paravirt/abi.h>

#define KVSTORE_DEVICE_TYPE (PV_DEVICE_TYPE_USER_FIRST + 0x4B56u) /* "KV" */
#define KVSTORE_VERSION 1u
#define KVSTORE_SLOT_SIZE 64u

enum kvstore_op {
    KVSTORE_OP_GET = 1,    /* copy the value of `key` into `value` (capacity value_length); the response gives its length */
    KVSTORE_OP_PUT = 2,    /* store value_length bytes at `value` under `key` (replacing) */
    KVSTORE_OP_DELETE = 3, /* remove `key` (PV_STATUS_NOT_FOUND when absent) */
};

typedef struct kvstore_request {
    uint64_t id;           /* echoed in the response */
    uint32_t op;           /* enum kvstore_op */
    uint32_t key_length;   /* 1..config.max_key */
    uint64_t key;          /* guest-physical address of the key bytes */
    uint64_t value;        /* guest-physical address of the value buffer */
    uint32_t value_length; /* PUT: value bytes (<= config.max_value); GET: buffer capacity */
    uint32_t reserved0;
    uint64_t reserved[3];
} kvstore_request;

typedef struct kvstore_response {
    uint64_t id;
    int64_t status;        /* 0 or a negative PV_STATUS_* (NOT_FOUND, TOO_BIG, NO_SPACE, INVALID, FAULT) */
    uint32_t value_length; /* GET: the value's length (also with TOO_BIG, so the guest can retry with a larger buffer) */
    uint32_t reserved0;
    uint64_t reserved1;
} kvstore_response;

typedef struct kvstore_config {
    uint32_t max_key;      /* longest key in bytes */
    uint32_t max_value;    /* longest value in bytes */
    uint32_t capacity;     /* most entries the store holds */
    uint32_t entries;      /* entries when the guest read the configuration */
} kvstore_config;

_Static_assert(sizeof(kvstore_request) == 64, "kvstore_request is one 64-byte slot");
_Static_assert(sizeof(kvstore_response) == 32, "kvstore_response fits a slot");
_Static_assert(sizeof(kvstore_config) == 16, "kvstore_config layout");

#endif
