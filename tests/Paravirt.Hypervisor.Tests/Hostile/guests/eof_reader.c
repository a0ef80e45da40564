/*
 * eof_reader: reads console0 lines until the host says the input ended, then prints how many lines and bytes it
 * read (on console_write) and exits 0. Exit 2 on any other read result.
 */
#include <paravirt/paravirt.h>

PV_REQUIRE_DEVICE(PV_DEVICE_KIND_CONSOLE, "console0");

int main(void)
{
    pv_cons con;
    if (pv_cons_attach(&con, "console0") < 0) {
        return 1;
    }
    long lines = 0, bytes = 0;
    for (;;) {
        char line[256];
        long n = pv_cons_read_line(&con, line, sizeof(line), PV_DEADLINE_NEVER);
        if (n == PV_CONS_EOF) {
            break;
        }
        if (n < 0) {
            pv_printf("eof_reader: read failed (%ld)\n", n);
            return 2;
        }
        lines++;
        bytes += n;
    }
    pv_printf("eof_reader: %ld lines, %ld bytes, end of input\n", lines, bytes);
    return 0;
}
