# paravirt.mk: build a Paravirt C guest image with GNU make (the same flags as the MSBuild targets).
#
# Usage, in your Makefile:
#
#     PV_GUEST := build/hello.elf        # the image to produce
#     PV_SRCS  := hello.c                # your C sources
#     include path/to/Guest.Sdk/native/paravirt.mk
#
#     all: $(PV_GUEST)
#
# Optional: PV_CC (default gcc), PV_EXTRA_CFLAGS, PV_EXTRA_LDFLAGS.

PARAVIRT_SDK := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

PV_CC ?= gcc

PV_CFLAGS := -std=gnu11 -ffreestanding -nostdlib -static -fno-pic -fno-pie -no-pie -mno-red-zone \
	-fno-stack-protector -fasynchronous-unwind-tables -g -mcmodel=small \
	-O2 -Wall -Wextra -Werror -I$(PARAVIRT_SDK)/include $(PV_EXTRA_CFLAGS)

PV_LDFLAGS := -Wl,-T,$(PARAVIRT_SDK)/paravirt.ld -Wl,--build-id=none -Wl,-z,noexecstack \
	-Wl,-z,max-page-size=0x1000 $(PV_EXTRA_LDFLAGS)

PV_RUNTIME_SRCS := $(PARAVIRT_SDK)/runtime/start.S $(wildcard $(PARAVIRT_SDK)/runtime/*.c)
PV_RUNTIME_DEPS := $(PV_RUNTIME_SRCS) $(wildcard $(PARAVIRT_SDK)/include/paravirt/*.h) $(PARAVIRT_SDK)/paravirt.ld

ifneq ($(PV_GUEST),)
$(PV_GUEST): $(PV_SRCS) $(PV_RUNTIME_DEPS)
	@mkdir -p $(dir $@)
	$(PV_CC) $(PV_CFLAGS) -o $@ $(PV_RUNTIME_SRCS) $(PV_SRCS) $(PV_LDFLAGS) -lgcc
endif
