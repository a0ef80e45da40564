/*
 * poll_forever: a hostile guest that waits for nothing, forever: poll(deadline never, no events), and again.
 * The run's timeout must still end it within the stated bound.
 */
#include <paravirt/paravirt.h>

int main(void)
{
    for (;;) {
        pv_poll(UINT64_MAX, 0);
    }
}
