#!/usr/bin/env bash
# Usage: bench/guests/build-suite.sh OUT_DIR [KERNEL...]
# Builds each kernel of the emulator benchmark suite (bench/guests/suite/*.c but runtime.c; all of them when none is
# named) ONCE into OUT_DIR/KERNEL.elf: one static ELF that runs natively, under qemu-x86_64 and as a Paravirt guest
# (see suite/runtime.c). Flags: gcc -O2 for x86-64-v2 (SSE..SSE4.2, POPCNT; no AVX), no libc, linked at 1 MiB.
# Prints the kernel names it built, one a line. CC overrides the compiler (default gcc).
set -euo pipefail
out="$1"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/suite"
include="$here/../../src/Guest.Sdk/native/include"
cc="${CC:-gcc}"
mkdir -p "$out"
if [ $# -eq 0 ]; then
    set -- $(cd "$src" && ls *.c | grep -v '^runtime\.c$' | sed 's/\.c$//')
fi
flags=(-O2 -march=x86-64-v2 -mtune=generic -std=gnu11 -Wall -Wextra -Werror
       -ffreestanding -fno-math-errno -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables
       -fno-pie -no-pie -static -nostdlib -Wl,-Ttext-segment=0x100000 -Wl,--build-id=none -Wl,-e,_start
       -I "$include")
pids=()
for k in "$@"; do
    [ -f "$src/$k.c" ] || { echo "build-suite.sh: no kernel '$k' (bench/guests/suite/$k.c)" >&2; exit 2; }
    "$cc" "${flags[@]}" -o "$out/$k.elf" "$src/$k.c" "$src/runtime.c" -lgcc &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ $status -eq 0 ] || { echo "build-suite.sh: a kernel failed to build" >&2; exit 1; }
printf '%s\n' "$@"
