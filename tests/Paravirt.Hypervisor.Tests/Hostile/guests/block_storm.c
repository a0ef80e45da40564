/*
 * block_storm: a hostile guest that keeps the largest block ring full of 1 MiB writes followed by flushes, forever.
 * Each doorbell asks the host for up to 256 MiB of I/O: the run's timeout must still end it within the bound.
 */
#include <paravirt/paravirt.h>

PV_REQUIRE_DEVICE(PV_DEVICE_KIND_BLOCK, "disk0");

static pv_blk disk;

int main(void)
{
    if (pv_blk_open(&disk, "disk0") < 0) {
        return 1;
    }
    uint8_t *buf = pv_page_alloc(PV_BLOCK_MAX_TRANSFER / 4096);
    if (buf == NULL) {
        return 2;
    }
    uint64_t sectors_per = PV_BLOCK_MAX_TRANSFER / PV_BLOCK_SECTOR_SIZE;
    uint64_t cookie = 0;
    for (;;) {
        while (pv_blk_inflight(&disk) < disk.ring.size) {
            uint32_t op = (cookie % 4 == 3) ? PV_BLOCK_OP_FLUSH : PV_BLOCK_OP_WRITE;
            uint64_t sector = (cookie * sectors_per) % (disk.sectors - sectors_per + 1);
            if (pv_blk_submit(&disk, op, sector, buf, op == PV_BLOCK_OP_FLUSH ? 0 : PV_BLOCK_MAX_TRANSFER, cookie) < 0) {
                return 3;
            }
            cookie++;
        }
        pv_blk_completion done[16];
        if (pv_blk_complete(&disk, done, 16, PV_DEADLINE_NEVER) < 0) {
            return 4;
        }
    }
}
