#!/usr/bin/env bash
# Usage: bench/guests/build-compute.sh OUT_DIR ROUNDS
# Builds bench/guests/compute.c twice from the same source and flags: OUT_DIR/compute.guest.elf (a freestanding
# Paravirt guest at 0x100000, for bench/Paravirt.Bench) and OUT_DIR/compute.linux (a static Linux program).
set -euo pipefail
out="$1"
rounds="$2"
src="$(dirname "${BASH_SOURCE[0]}")/compute.c"
mkdir -p "$out"
common=(-O2 -DROUNDS="$rounds" -fno-pie -no-pie -static -fno-builtin -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables)
gcc "${common[@]}" -DPARAVIRT_GUEST -ffreestanding -nostdlib -Wl,-Ttext-segment=0x100000 -Wl,--build-id=none -Wl,-e,_start \
    -o "$out/compute.guest.elf" "$src"
gcc "${common[@]}" -o "$out/compute.linux" "$src"
