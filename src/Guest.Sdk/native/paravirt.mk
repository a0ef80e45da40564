# paravirt.mk: build a Paravirt C guest image with GNU make 4.0 or later (the same flags as the MSBuild targets).
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

# The flags live in guest.cflags and guest.ldflags, which the MSBuild targets read too.
PV_CFLAGS := $(file < $(PARAVIRT_SDK)/guest.cflags) -I$(PARAVIRT_SDK)/include $(PV_EXTRA_CFLAGS)

PV_LDFLAGS := -Wl,-T,$(PARAVIRT_SDK)/paravirt.ld $(file < $(PARAVIRT_SDK)/guest.ldflags) $(PV_EXTRA_LDFLAGS)

PV_RUNTIME_SRCS := $(PARAVIRT_SDK)/runtime/start.S $(wildcard $(PARAVIRT_SDK)/runtime/*.c)
PV_RUNTIME_DEPS := $(PV_RUNTIME_SRCS) $(wildcard $(PARAVIRT_SDK)/include/paravirt/*.h) $(PARAVIRT_SDK)/paravirt.ld \
	$(PARAVIRT_SDK)/guest.cflags $(PARAVIRT_SDK)/guest.ldflags

ifneq ($(PV_GUEST),)
$(PV_GUEST): $(PV_SRCS) $(PV_RUNTIME_DEPS)
	@mkdir -p $(dir $@)
	$(PV_CC) $(PV_CFLAGS) -o $@ $(PV_RUNTIME_SRCS) $(PV_SRCS) $(PV_LDFLAGS) -lgcc
endif
