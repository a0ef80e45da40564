/*
 * sandbox.c: the guest side of sandbox calls (paravirt/sandbox.h): the serve loop that dispatches the host's calls
 * to PV_GUEST_FUNCTIONs, and host-function calls.
 */
#include <paravirt/paravirt.h>

extern const pv_guest_function __start_pv_guest_functions[];
extern const pv_guest_function __stop_pv_guest_functions[];

/* The buffers come from pv_page_alloc when first needed, so plain guests that link this file pay nothing. */
static uint8_t *pv_sb_call;
static uint8_t *pv_sb_result;
static uint8_t *pv_sb_host_request;
static uint8_t *pv_sb_host_response;
static pv_mp_writer pv_sb_host_writer;

#define PV_SB_PAGES(bytes) (((bytes) + 4095u) / 4096u)

long pv_sandbox_fail(pv_mp_writer *result, long status, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pv_vformat(message, sizeof message, "", fmt, ap);
    va_end(ap);
    pv_mp_writer_init(result, result->start, (size_t)(result->end - result->start));
    pv_mp_write_str(result, message, (uint32_t)n);
    return status < 0 ? status : PV_STATUS_INVALID;
}

static const pv_guest_function *pv_sb_find(const char *name, uint32_t length)
{
    for (const pv_guest_function *f = __start_pv_guest_functions; f < __stop_pv_guest_functions; f++) {
        if (f->length == length && f->name[0] == name[0] && memcmp(f->name, name, length) == 0) {
            return f;
        }
    }
    return NULL;
}

/* Runs one call [name, args] of `length` bytes; leaves the result or the error message in `result`. */
static long pv_sb_dispatch(size_t length, pv_mp_writer *result)
{
    pv_mp_reader call;
    pv_mp_reader_init(&call, pv_sb_call, length);
    uint32_t name_length = 0;
    const char *name = NULL;
    if (pv_mp_read_array(&call) == 2) {
        name = pv_mp_read_str(&call, &name_length);
    }
    uint32_t argc = pv_mp_read_array(&call);
    if (call.error != 0 || name == NULL) {
        return pv_sandbox_fail(result, PV_STATUS_PROTOCOL, "malformed call: expected [name, args]");
    }
    const pv_guest_function *f = pv_sb_find(name, name_length);
    if (f == NULL) {
        return pv_sandbox_fail(result, PV_STATUS_NOT_FOUND, "no guest function '%.*s'", (int)name_length, name);
    }
    pv_mp_reader args = call;
    args.count = argc;
    long status = f->fn(&args, result);
    if (status < 0) {
        if (pv_mp_writer_length(result) == 0 || result->error != 0) {
            return pv_sandbox_fail(result, status, "guest function '%s' failed (status %ld)", f->name, status);
        }
        return status;
    }
    if (args.error != 0) {
        return pv_sandbox_fail(result, PV_STATUS_INVALID, "guest function '%s': the arguments do not match its parameters (status %ld)", f->name, args.error);
    }
    if (result->error != 0) {
        return pv_sandbox_fail(result, PV_STATUS_TOO_BIG, "guest function '%s': its result does not fit the %u-byte result buffer", f->name, (unsigned)PV_SANDBOX_RESULT_BUFFER);
    }
    if (pv_mp_writer_length(result) == 0) {
        pv_mp_write_nil(result);
    }
    return 0;
}

long pv_sandbox_serve(void)
{
    const pv_boot_info *boot = pv_boot_info_get();
    if ((boot->features0 & PV_FEATURE0_SANDBOX) == 0) {
        return PV_STATUS_NOT_IMPLEMENTED;
    }
    pv_sb_call = pv_page_alloc(PV_SB_PAGES(PV_SANDBOX_CALL_BUFFER));
    pv_sb_result = pv_page_alloc(PV_SB_PAGES(PV_SANDBOX_RESULT_BUFFER));
    if (pv_sb_call == NULL || pv_sb_result == NULL) {
        return PV_STATUS_NO_MEMORY;
    }
    long n = pv_hypercall2(PV_HYPERCALL_SANDBOX_READY, (uint64_t)(uintptr_t)pv_sb_call, PV_SANDBOX_CALL_BUFFER);
    for (;;) {
        if (n < 0) {
            return n;
        }
        pv_mp_writer result;
        pv_mp_writer_init(&result, pv_sb_result, PV_SANDBOX_RESULT_BUFFER);
        long status = (size_t)n <= PV_SANDBOX_CALL_BUFFER
            ? pv_sb_dispatch((size_t)n, &result)
            : pv_sandbox_fail(&result, PV_STATUS_PROTOCOL, "the call (%ld bytes) overflows the call buffer", n);
        n = pv_hypercall3(PV_HYPERCALL_SANDBOX_RETURN, (uint64_t)status, (uint64_t)(uintptr_t)pv_sb_result,
                          pv_mp_writer_length(&result));
    }
}

pv_mp_writer *pv_host_call_begin(const char *name, uint32_t argc)
{
    if (pv_sb_host_request == NULL) {
        pv_sb_host_request = pv_page_alloc(PV_SB_PAGES(PV_SANDBOX_HOST_BUFFER));
        pv_sb_host_response = pv_page_alloc(PV_SB_PAGES(PV_SANDBOX_HOST_BUFFER));
    }
    if (pv_sb_host_request == NULL || pv_sb_host_response == NULL) {
        pv_mp_writer_init(&pv_sb_host_writer, NULL, 0);
        pv_sb_host_writer.error = PV_STATUS_NO_MEMORY;
        return &pv_sb_host_writer;
    }
    pv_mp_writer_init(&pv_sb_host_writer, pv_sb_host_request, PV_SANDBOX_HOST_BUFFER);
    pv_mp_write_array(&pv_sb_host_writer, 2);
    pv_mp_write_cstr(&pv_sb_host_writer, name);
    pv_mp_write_array(&pv_sb_host_writer, argc);
    return &pv_sb_host_writer;
}

long pv_host_call_end(pv_mp_reader *result)
{
    pv_mp_reader_init(result, pv_sb_host_response, 0);
    if (pv_sb_host_request == NULL) {
        return PV_STATUS_INVALID; /* pv_host_call_begin was not called */
    }
    if (pv_sb_host_writer.error != 0) {
        return pv_sb_host_writer.error;
    }
    long n = pv_hypercall4(PV_HYPERCALL_HOST_CALL, (uint64_t)(uintptr_t)pv_sb_host_request,
                           pv_mp_writer_length(&pv_sb_host_writer), (uint64_t)(uintptr_t)pv_sb_host_response,
                           PV_SANDBOX_HOST_BUFFER);
    if (n >= 0) {
        pv_mp_reader_init(result, pv_sb_host_response, (size_t)n <= PV_SANDBOX_HOST_BUFFER ? (size_t)n : 0);
        return n;
    }
    /* An error: the host wrote a MessagePack string (when it fit); let the caller read it. */
    pv_mp_reader probe;
    pv_mp_reader_init(&probe, pv_sb_host_response, PV_SANDBOX_HOST_BUFFER);
    pv_mp_skip(&probe);
    pv_mp_reader_init(result, pv_sb_host_response, probe.error == 0 ? (size_t)(probe.pos - pv_sb_host_response) : 0);
    return n;
}
