/*
 * console_flood: a hostile guest that writes far more console output (through the console0 ring) than a stalled
 * reader takes, forever. The host must keep honouring the run's timeout while its flush to the reader is stuck.
 */
#include <paravirt/paravirt.h>

PV_REQUIRE_DEVICE(PV_DEVICE_KIND_CONSOLE, "console0");

static char chunk[4096];

int main(void)
{
    pv_cons con;
    if (pv_cons_attach(&con, "console0") < 0) {
        return 1;
    }
    memset(chunk, 'x', sizeof(chunk));
    for (;;) {
        if (pv_cons_write(&con, chunk, sizeof(chunk)) < 0) {
            return 2;
        }
    }
}
