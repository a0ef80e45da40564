#!/usr/bin/env bash
# Emulator vs QEMU TCG benchmark.
#
# Builds bench/guests/compute.c twice from the same source and flags:
#   (a) a Paravirt guest (freestanding ELF at 0x100000) run on the emulator backend by bench/Paravirt.Bench, which
#       reports the exact guest instruction count;
#   (b) a static Linux program run natively and under qemu-x86_64 (QEMU user-mode TCG).
# Checks that all three print the same checksum, then writes its section of bench/RESULTS.md (instructions per second for each and
# the emulator/QEMU ratio). Instruction counts for native and QEMU come from `perf stat -e instructions:u` when the
# machine exposes hardware counters, otherwise from the emulator's exact count for the same kernel (said so in the
# results).
#
# Usage: bench/emulator-vs-qemu.sh            (ROUNDS=200 by default, about 1.4 G guest instructions)
#        ROUNDS=40 bench/emulator-vs-qemu.sh  (quicker)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-200}
OUT=${OUT:-$ROOT/artifacts/bench}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need gcc || missing+=(gcc)
need qemu-x86_64 || missing+=(qemu-user)
need objdump || missing+=(binutils)
need bc || missing+=(bc)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bench/guests/build-compute.sh "$OUT" "$ROUNDS"

dotnet build -c Release -nologo -v quiet bench/Paravirt.Bench/Paravirt.Bench.csproj >/dev/null
BENCH_DLL=bench/Paravirt.Bench/bin/Release/net10.0/Paravirt.Bench.dll

now() { date +%s.%N; }
# best_of N CMD...: runs CMD N times, prints the shortest wall time in seconds; the output of the last run is in $OUT/last.txt
best_of() {
    local n=$1; shift
    local best=""
    for _ in $(seq "$n"); do
        local t0 t1 dt
        t0=$(now)
        "$@" > "$OUT/last.txt"
        t1=$(now)
        dt=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$dt < $best" | bc -l)" = 1 ]; then best=$dt; fi
    done
    echo "$best"
}

echo "== emulator ==" >&2
dotnet "$BENCH_DLL" "$OUT/compute.guest.elf" 3 | tee "$OUT/emulator.txt" >&2
EMU_LINE=$(tail -n 1 "$OUT/emulator.txt")
EMU_SUM=$(echo "$EMU_LINE" | sed -E 's/.*output="checksum ([0-9a-f]+)".*/\1/')
INSN=$(echo "$EMU_LINE" | sed -E 's/.*instructions=([0-9]+).*/\1/')
EMU_S=$(grep -oE ' seconds=[0-9.]+' "$OUT/emulator.txt" | cut -d= -f2 | sort -g | head -n 1)
EMU_CPU_S=$(grep -oE 'cpu_seconds=[0-9.]+' "$OUT/emulator.txt" | cut -d= -f2 | sort -g | head -n 1)

echo "== emulator, interpreter only (PARAVIRT_EMULATOR_JIT=0) ==" >&2
PARAVIRT_EMULATOR_JIT=0 dotnet "$BENCH_DLL" "$OUT/compute.guest.elf" 2 | tee "$OUT/interpreter.txt" >&2
INTERP_S=$(grep -oE ' seconds=[0-9.]+' "$OUT/interpreter.txt" | cut -d= -f2 | sort -g | head -n 1)

echo "== native ==" >&2
NATIVE_S=$(printf "%.3f" "$(best_of 7 "$OUT/compute.linux")")
NATIVE_SUM=$(sed -E 's/checksum ([0-9a-f]+)/\1/' "$OUT/last.txt")

echo "== qemu-x86_64 ==" >&2
QEMU_S=$(printf "%.3f" "$(best_of 5 qemu-x86_64 "$OUT/compute.linux")")
QEMU_SUM=$(sed -E 's/checksum ([0-9a-f]+)/\1/' "$OUT/last.txt")

if [ "$EMU_SUM" != "$NATIVE_SUM" ] || [ "$QEMU_SUM" != "$NATIVE_SUM" ]; then
    echo "checksum mismatch: emulator $EMU_SUM native $NATIVE_SUM qemu $QEMU_SUM" >&2
    exit 1
fi

COUNT_SOURCE="the emulator's exact count for the same kernel (perf stat -e instructions:u is not supported on this machine: no hardware counters)"
PERF_N=$(perf stat -x, -e instructions:u "$OUT/compute.linux" 2>&1 >/dev/null | grep instructions | cut -d, -f1 || true)
NATIVE_INSN=$INSN
if [[ "$PERF_N" =~ ^[0-9]+$ ]]; then
    NATIVE_INSN=$PERF_N
    COUNT_SOURCE="perf stat -e instructions:u on the native run ($PERF_N); the emulator's exact count is $INSN"
fi

rate() { echo "scale=3; $1 / $2 / 1000000" | bc -l; }
NATIVE_MIPS=$(rate "$NATIVE_INSN" "$NATIVE_S")
QEMU_MIPS=$(rate "$NATIVE_INSN" "$QEMU_S")
EMU_MIPS=$(rate "$INSN" "$EMU_S")
EMU_CPU_MIPS=$(rate "$INSN" "$EMU_CPU_S")
INTERP_MIPS=$(rate "$INSN" "$INTERP_S")
RATIO=$(echo "scale=4; $EMU_MIPS / $QEMU_MIPS" | bc -l)
RATIO_FMT=$(printf '%.2f' "$RATIO")
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

cat > "$OUT/section.md" <<MD
# Emulator vs QEMU TCG

Command: \`bench/emulator-vs-qemu.sh\` (ROUNDS=$ROUNDS)
Date: $(date -u '+%Y-%m-%d %H:%M UTC')
Machine: $CPU_MODEL, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"); load average at the end: $LOAD
Toolchain: $(gcc --version | head -n 1); $(qemu-x86_64 --version | head -n 1); .NET $(dotnet --version)

Workload: \`bench/guests/compute.c\` (CRC32 bitwise + table, SHA-256 over 64 KiB, integer mix; $ROUNDS rounds),
checksum \`$NATIVE_SUM\` on all three. Guest instructions: $INSN (emulator, exact).
Instruction count used for native and QEMU: $COUNT_SOURCE.

| Runner | Seconds (best) | Guest instructions/s |
|---|---|---|
| native (\`gcc -O2 -static\`) | $NATIVE_S | $NATIVE_MIPS M |
| QEMU user TCG (\`qemu-x86_64\`) | $QEMU_S | $QEMU_MIPS M |
| Paravirt emulator (wall clock, best of 3 runs in one process) | $EMU_S | $EMU_MIPS M |
| Paravirt emulator (vCPU thread CPU time) | $EMU_CPU_S | $EMU_CPU_MIPS M |
| Paravirt emulator, interpreter only (\`PARAVIRT_EMULATOR_JIT=0\`, wall clock) | $INTERP_S | $INTERP_MIPS M |

emulator/QEMU TCG: ${RATIO_FMT}x

Notes: the emulator translates hot blocks to IL (DynamicMethod) after 32 runs; the best of 3 runs in one process is
reported (run 1 includes .NET and block-translation warm-up). The machine may be shared (other builds on its 2
cores), so wall-clock figures move with the load (see the load average above); the vCPU thread CPU time is the
steadier figure. The ratio line uses the wall-clock emulator figure.
Raw emulator output:

\`\`\`
$(cat "$OUT/emulator.txt")
\`\`\`
MD
"$ROOT/bench/replace-section.sh" "$RESULTS" "$OUT/section.md"
echo "wrote $RESULTS: emulator/QEMU TCG: ${RATIO_FMT}x" >&2
