/*
 * note.c: the ABI version note every guest image carries.
 *
 * An ELF note in section .note.paravirt (aligned 4; the linker script puts it in a PT_NOTE segment):
 *   namesz = sizeof(PV_NOTE_NAME) = 9, descsz = sizeof(pv_abi_note) = 8, type = PV_NOTE_TYPE_ABI,
 *   name = "Paravirt\0" padded to 12 bytes, desc = { PV_ABI_VERSION_MAJOR, PV_ABI_VERSION_MINOR, 0 }.
 * The host reads it before running anything and refuses another major or a newer minor.
 * gas gives sections named .note* the type SHT_NOTE, so `readelf -n` shows it.
 */
#include <paravirt/abi.h>

__attribute__((used, section(".note.paravirt"), aligned(4))) const struct {
    uint32_t namesz, descsz, type;
    char name[(sizeof(PV_NOTE_NAME) + 3) & ~(size_t)3];
    pv_abi_note desc;
} pv_abi_version_note = {
    sizeof(PV_NOTE_NAME),
    sizeof(pv_abi_note),
    PV_NOTE_TYPE_ABI,
    PV_NOTE_NAME,
    { PV_ABI_VERSION_MAJOR, PV_ABI_VERSION_MINOR, 0 },
};

_Static_assert(sizeof(pv_abi_version_note) == 12 + 12 + 8, "ABI note layout");
