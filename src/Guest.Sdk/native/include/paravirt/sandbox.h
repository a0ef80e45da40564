/*
 * paravirt/sandbox.h: serve typed calls from the host (guest functions) and call the host's functions.
 *
 *     PV_GUEST_FUNCTION(Add, args, result)
 *     {
 *         int64_t a = pv_mp_read_int(args), b = pv_mp_read_int(args);
 *         pv_mp_write_int(result, a + b);
 *         return 0;
 *     }
 *
 *     int main(void)
 *     {
 *         ... initialize (this runs once; a snapshot taken after it seeds every call) ...
 *         return (int)pv_sandbox_serve();   // does not return in a sandbox
 *     }
 *
 * PV_GUEST_FUNCTION(name, args, result) defines `static long fn(pv_mp_reader *args, pv_mp_writer *result)` and
 * declares it twice: in an ELF note (PV_NOTE_TYPE_SANDBOX, so the host lists the functions before running the image)
 * and in the table pv_sandbox_serve dispatches from. `args` is positioned at the first argument (args->count holds
 * how many the host passed); the function writes exactly one MessagePack value to `result` (nil when it writes
 * none) and returns 0, or returns pv_sandbox_fail(result, PV_STATUS_..., "message", ...). A function that returns 0
 * after reading arguments of the wrong type gets PV_STATUS_INVALID reported for it.
 *
 * The protocol (paravirt/abi.h, PV_HYPERCALL_SANDBOX_*): calls arrive as [name, args] in the call buffer; results
 * and errors (a negative status plus a MessagePack string) go back with PV_HYPERCALL_SANDBOX_RETURN.
 */
#ifndef PARAVIRT_SANDBOX_H
#define PARAVIRT_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "msgpack.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the call buffer the host writes calls into, and of the result buffer (link-time constants). */
#define PV_SANDBOX_CALL_BUFFER (256u * 1024u)
#define PV_SANDBOX_RESULT_BUFFER (256u * 1024u)

typedef long (*pv_guest_fn)(pv_mp_reader *args, pv_mp_writer *result);

/* One entry of the guest-function table (section pv_guest_functions). */
typedef struct pv_guest_function {
    const char *name;
    size_t length; /* strlen(name) */
    pv_guest_fn fn;
} pv_guest_function;

/* Only the note that declares guest function `name` (the C# SDK's build generates these from ParavirtGuestFunction
 * items; C guests use PV_GUEST_FUNCTION, which includes it). */
#define PV_GUEST_FUNCTION_NOTE(name)                                                                               \
    _Static_assert(sizeof(#name) <= PV_SANDBOX_NAME_MAX + 1, "guest function name too long: " #name);             \
    __attribute__((used, section(".note.paravirt"), aligned(4))) static const struct {                           \
        uint32_t namesz, descsz, type;                                                                             \
        char owner[(sizeof(PV_NOTE_NAME) + 3) & ~(size_t)3];                                                       \
        pv_sandbox_decl decl;                                                                                      \
    } pv_gf_note_##name = {                                                                                        \
        sizeof(PV_NOTE_NAME), sizeof(pv_sandbox_decl), PV_NOTE_TYPE_SANDBOX, PV_NOTE_NAME,                         \
        { PV_SANDBOX_DECL_KIND_FUNCTION, 0u, 0u, #name },                                                          \
    }

#define PV_GUEST_FUNCTION(name, args, result)                                                                      \
    static long pv_gf_##name(pv_mp_reader *args, pv_mp_writer *result);                                           \
    PV_GUEST_FUNCTION_NOTE(name);                                                                                  \
    __attribute__((used, section("pv_guest_functions"), aligned(8))) static const pv_guest_function                \
        pv_gf_entry_##name = { #name, sizeof(#name) - 1, pv_gf_##name };                                                              \
    static long pv_gf_##name(pv_mp_reader *args, pv_mp_writer *result)

/*
 * Registers the call buffer with the host (the sandbox's ready point: the host stops the guest here after its
 * initialization) and serves calls forever. Returns only when the host does not offer PV_FEATURE0_SANDBOX (the image
 * was run as a plain guest: PV_STATUS_NOT_IMPLEMENTED) or refuses the buffer.
 */
long pv_sandbox_serve(void);

/* Replaces whatever `result` holds with the message (printf-style) and returns `status` (a negative PV_STATUS_*). */
long pv_sandbox_fail(pv_mp_writer *result, long status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Calling a host function:
 *
 *     pv_mp_writer *args = pv_host_call_begin("Log", 1);  // [name, array(1)] is written; write the arguments
 *     pv_mp_write_cstr(args, "hello");
 *     pv_mp_reader result;
 *     long status = pv_host_call_end(&result);            // >= 0: result reads the value; < 0: result reads the
 *                                                         // host's message (a string)
 *
 * The request and response buffers are the runtime's own (PV_SANDBOX_HOST_BUFFER bytes each), so a guest function's
 * arguments stay valid; the result is valid until the next host call.
 */
#define PV_SANDBOX_HOST_BUFFER (64u * 1024u)
pv_mp_writer *pv_host_call_begin(const char *name, uint32_t argc);
long pv_host_call_end(pv_mp_reader *result);

#ifdef __cplusplus
}
#endif

#endif /* PARAVIRT_SANDBOX_H */
