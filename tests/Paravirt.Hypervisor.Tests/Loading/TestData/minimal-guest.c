/* A minimal guest linked by GNU ld with the Paravirt linker script (src/Guest.Sdk/native/paravirt.ld), kept as a
 * binary fixture so the loader is tested against real linker output (bss-only PT_LOAD with p_offset 0, notes inside
 * a PT_LOAD). Rebuild with:
 *   gcc -O2 -ffreestanding -fno-pie -nostdlib -static -no-pie -Wl,-T,src/Guest.Sdk/native/paravirt.ld \
 *       -Wl,--build-id=none -Wl,-z,noexecstack -Wl,-z,max-page-size=0x1000 -o minimal-guest.elf minimal-guest.c
 */
struct note { unsigned namesz, descsz, type; char name[12]; unsigned short maj, min; unsigned flags; };
__attribute__((section(".note.paravirt"), used, aligned(4))) static const struct note abi = {9, 8, 1, "Paravirt", 1, 0, 0};
struct mnote { unsigned namesz, descsz, type; char name[12]; unsigned count, res; struct { unsigned kind, flags; char name[24]; } e[2]; };
__attribute__((section(".note.paravirt"), used, aligned(4))) static const struct mnote man = {9, 8+64, 2, "Paravirt", 2, 0, {{1,0,"console"},{2,1,"disk0"}}};
int counter; char buf[100000];
__attribute__((section(".text.start"))) void _start(void) { counter++; buf[5]=1; for(;;); }
