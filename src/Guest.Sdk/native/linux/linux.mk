# Builds the Linux personality library OS (paravirt-linux.elf) from source: its own files here plus the SDK's C
# runtime and drivers (../runtime), compiled freestanding for CPL 0: no SSE in kernel code (-mgeneral-regs-only: the
# application's FPU state stays untouched across system calls), position-independent code (-fpie) linked to run at
# PHYS_OFFSET + its load address (linux.ld). Called by src/Hypervisor.Core's build, which embeds the result.
#
#   make -f linux.mk OUT=<dir>        writes <dir>/paravirt-linux.elf
#   make -f linux.mk OUT=<dir> CC=gcc-12
# (linux.mk, not Makefile: NuGet packs a file without an extension as a folder.)

OUT ?= build
CC ?= gcc

SDK := ..
SRCS := entry.S main.c cpu.c mm.c vm.c sched.c signal.c fs.c exec.c syscall.c
RUNTIME := $(SDK)/runtime/runtime.c $(SDK)/runtime/printf.c $(SDK)/runtime/string.c $(SDK)/runtime/devices.c \
	$(SDK)/runtime/cmdline.c $(SDK)/runtime/note.c
HEADERS := $(wildcard *.h) $(wildcard $(SDK)/include/paravirt/*.h)

CFLAGS := -std=gnu11 -ffreestanding -nostdlib -fpie -mno-red-zone -mgeneral-regs-only -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-omit-frame-pointer -O2 -g0 -Wall -Wextra -Werror \
	-Wno-unused-parameter -DPV_PHYS_OFFSET=0xffff800000000000ull -I$(SDK)/include
LDFLAGS := -nostdlib -static -no-pie -Wl,-T,linux.ld -Wl,--build-id=none -Wl,-z,noexecstack \
	-Wl,-z,max-page-size=0x1000 -Wl,--no-warn-rwx-segments -Wl,--no-relax

OBJS := $(patsubst %.S,$(OUT)/obj/%.o,$(patsubst %.c,$(OUT)/obj/%.o,$(SRCS))) \
	$(patsubst $(SDK)/runtime/%.c,$(OUT)/obj/rt-%.o,$(RUNTIME))

$(OUT)/paravirt-linux.elf: $(OBJS) linux.ld linux.mk
	$(CC) $(LDFLAGS) -o $@ $(OBJS) -lgcc

$(OUT)/obj/%.o: %.c $(HEADERS) linux.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/obj/%.o: %.S linux.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/obj/rt-%.o: $(SDK)/runtime/%.c $(HEADERS) linux.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

.PHONY: clean
clean:
	rm -rf $(OUT)
