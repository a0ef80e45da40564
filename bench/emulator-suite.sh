#!/usr/bin/env bash
# The emulator benchmark suite: how fast the Paravirt emulator backend is against QEMU user-mode TCG (and native),
# how fast a VM starts, and what a hypercall costs. Everything in one run on one machine, written as one section
# of bench/RESULTS.md (replacing the previous run's; bench/replace-section.sh).
#
#  1. Compute: every kernel of bench/guests/suite (see its README.md), each built ONCE (bench/guests/build-suite.sh)
#     into one static ELF, run natively, under qemu-x86_64 and on the emulator backend (bench/Paravirt.Bench
#     `kernel`, through GuestRunner, RUNS_EMU runs in one process), plus INTERP_RUNS runs with the block compiler off
#     (PARAVIRT_EMULATOR_JIT=0). Every runner must print the same line (kernel, scale, checksum) or the script
#     stops with exit status 1. Best of N wall time and, separately, best of N CPU time (user+sys for the native
#     and QEMU processes; for the emulator the vCPU thread's and the whole process's). Ratios are speeds relative
#     to QEMU (QEMU time / runner time: above 1 is faster than QEMU), per kernel and as a geometric mean.
#  2. Cold start: the hello guest (artifacts/guests/hello.elf) created, loaded and run to its exit in process, the
#     first VM of the image and the next ones, against spawning /bin/true (Process.Start and posix_spawn), on the
#     emulator and on KVM where the KVM backend runs (here: kvm_pvm). COLD_PROCS fresh processes.
#  3. Hypercall round trip on the emulator (and KVM) against a .NET interface call of the same handler.
#
# Usage: bench/emulator-suite.sh [--quick] [KERNEL...]
#   --quick    smoke run: scale 1, one run per runner, short cold-start and hypercall loops; prints the section
#              and does not touch bench/RESULTS.md (WRITE=1 writes it anyway)
# Environment: RUNS_NATIVE (5), RUNS_QEMU (3), RUNS_EMU (3), INTERP_RUNS (1; 0 skips), COLD_PROCS (5),
#   COLD_COUNT (200), HC_COUNT (1000000), HC_COUNT_KVM (20000), HC_RUNS (5), SCALE (each kernel's default),
#   NO_WRITE=1 (print the section only), OUT (artifacts/bench/suite).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

quick=0
kernels=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "emulator-suite.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) kernels+=("$arg") ;;
    esac
done
if [ $quick = 1 ]; then
    : "${RUNS_NATIVE:=1}" "${RUNS_QEMU:=1}" "${RUNS_EMU:=1}" "${INTERP_RUNS:=1}" "${COLD_PROCS:=1}" "${COLD_COUNT:=20}"
    : "${HC_COUNT:=100000}" "${HC_COUNT_KVM:=2000}" "${HC_RUNS:=1}" "${SCALE:=1}"
    [ "${WRITE:-0}" = 1 ] || NO_WRITE=1
fi
RUNS_NATIVE="${RUNS_NATIVE:-5}"
RUNS_QEMU="${RUNS_QEMU:-3}"
RUNS_EMU="${RUNS_EMU:-3}"
INTERP_RUNS="${INTERP_RUNS:-1}"
COLD_PROCS="${COLD_PROCS:-5}"
COLD_COUNT="${COLD_COUNT:-200}"
HC_COUNT="${HC_COUNT:-1000000}"
HC_COUNT_KVM="${HC_COUNT_KVM:-20000}"
HC_RUNS="${HC_RUNS:-5}"
SCALE="${SCALE:-}"
out="${OUT:-$repo/artifacts/bench/suite}"
mkdir -p "$out"

for tool in gcc qemu-x86_64 dotnet awk; do
    command -v "$tool" >/dev/null || { echo "emulator-suite.sh: $tool is required (eng/install-deps.sh installs gcc and qemu-user)" >&2; exit 2; }
done

command_line="bench/emulator-suite.sh${*:+ $*}"
load_start="$(bench_load)"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/RESULTS.md' 2>/dev/null || echo ' (with uncommitted changes)')"
echo "== build (load average $load_start)" >&2
mapfile -t kernels < <(bench/guests/build-suite.sh "$out" "${kernels[@]}")
dotnet build bench/Paravirt.Bench/Paravirt.Bench.csproj -c Release -nologo -v q -clp:ErrorsOnly >/dev/null
dotnet build samples/hello/hello.csproj -nologo -v q -clp:ErrorsOnly >/dev/null
bench=(dotnet bench/Paravirt.Bench/bin/Release/net10.0/Paravirt.Bench.dll)
hello="$repo/artifacts/guests/hello.elf"

# timed RUNS FILE CMD...: runs CMD RUNS times; prints "best_wall best_cpu" (seconds; cpu = user + sys of the child)
# and leaves the last run's stdout in FILE. Call it as t="$(timed ...)", so that a failing run stops the script.
timed() {
    local runs=$1 file=$2
    shift 2
    local best_wall="" best_cpu="" t
    for _ in $(seq "$runs"); do
        t="$( { TIMEFORMAT='%3R %3U %3S'; time "$@" >"$file" 2>"$file.err"; } 2>&1 )" || {
            echo "emulator-suite.sh: '$*' failed: $(cat "$file" "$file.err")" >&2; exit 1; }
        read -r wall user sys <<<"$t"
        local cpu
        cpu="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }')"
        best_wall="$(awk -v a="$best_wall" -v b="$wall" 'BEGIN { print (a == "" || b < a) ? b : a }')"
        best_cpu="$(awk -v a="$best_cpu" -v b="$cpu" 'BEGIN { print (a == "" || b < a) ? b : a }')"
    done
    echo "$best_wall $best_cpu"
}
# field NAME: the smallest value of NAME=... over the lines on stdin
field_min() { grep -oE "(^| )$1=[0-9.]+" | cut -d= -f2 | sort -g | head -n 1; }
field_last() { grep -oE "(^| )$1=[0-9.]+" | cut -d= -f2 | tail -n 1; }

perf_ok=0
if command -v perf >/dev/null && perf stat -x, -e instructions:u /bin/true 2>&1 >/dev/null | grep -qE '^[0-9]+,'; then
    perf_ok=1
fi

rows="$out/rows.tsv"
: >"$rows"
for k in "${kernels[@]}"; do
    elf="$out/$k.elf"
    echo "== $k" >&2
    t="$(timed "$RUNS_NATIVE" "$out/$k.native.txt" "$elf" $SCALE)"
    read -r n_wall n_cpu <<<"$t"
    t="$(timed "$RUNS_QEMU" "$out/$k.qemu.txt" qemu-x86_64 "$elf" $SCALE)"
    read -r q_wall q_cpu <<<"$t"
    "${bench[@]}" kernel "$elf" "$RUNS_EMU" emulator "$SCALE" >"$out/$k.emulator.txt" ||
        { echo "emulator-suite.sh: $k failed on the emulator" >&2; exit 1; }
    cat "$out/$k.emulator.txt" >&2
    line="$(cat "$out/$k.native.txt")"
    mismatch=""
    [ "$(cat "$out/$k.qemu.txt")" = "$line" ] || mismatch+=" qemu: '$(cat "$out/$k.qemu.txt")'"
    grep -qF "output=\"$line\"" "$out/$k.emulator.txt" || mismatch+=" emulator: $(head -n 1 "$out/$k.emulator.txt")"
    i_wall=- i_cpu=-
    if [ "$INTERP_RUNS" -gt 0 ]; then
        PARAVIRT_EMULATOR_JIT=0 "${bench[@]}" kernel "$elf" "$INTERP_RUNS" emulator "$SCALE" >"$out/$k.interpreter.txt" ||
            { echo "emulator-suite.sh: $k failed on the emulator's interpreter" >&2; exit 1; }
        grep -qF "output=\"$line\"" "$out/$k.interpreter.txt" || mismatch+=" interpreter: $(head -n 1 "$out/$k.interpreter.txt")"
        i_wall="$(field_min seconds <"$out/$k.interpreter.txt")"
        i_cpu="$(field_min process_cpu_seconds <"$out/$k.interpreter.txt")"
    fi
    if [ -n "$mismatch" ]; then
        echo "emulator-suite.sh: CHECKSUM MISMATCH for $k: native printed '$line';$mismatch" >&2
        exit 1
    fi
    e="$out/$k.emulator.txt"
    insn="$(field_last instructions <"$e")"
    perf_insn=-
    if [ $perf_ok = 1 ]; then
        perf_insn="$(perf stat -x, -e instructions:u "$elf" $SCALE 2>&1 >/dev/null | awk -F, '/instructions/ { print $1 }')"
    fi
    # Allocation per run: the last run's (run 1 also holds .NET's own first-use allocations).
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "${line#* }" "$insn" "$n_wall" "$n_cpu" "$q_wall" "$q_cpu" \
        "$(field_min seconds <"$e")" "$(field_min thread_cpu_seconds <"$e")" "$(field_min process_cpu_seconds <"$e")" \
        "$(field_last allocated_bytes <"$e")" "$(field_min allocated_bytes <"$e" | head -n 1)" "$i_wall" "$i_cpu" "$perf_insn" >>"$rows"
done

echo "== cold start" >&2
coldstart() { # BACKEND: COLD_PROCS fresh processes; prints the combined key=value lines
    local backend=$1
    for _ in $(seq "$COLD_PROCS"); do
        "${bench[@]}" coldstart "$hello" "$COLD_COUNT" "$backend" || { echo "emulator-suite.sh: cold start on $backend failed" >&2; exit 1; }
    done
}
cold_emu="$(coldstart emulator)"
cold_kvm="$(coldstart kvm)"
printf '%s\n' "$cold_emu" "$cold_kvm" >&2

echo "== hypercall round trip" >&2
hc_emu="$("${bench[@]}" hypercall "$HC_COUNT" "$HC_RUNS" emulator)"
hc_kvm="$("${bench[@]}" hypercall "$HC_COUNT_KVM" "$HC_RUNS" kvm)"
printf '%s\n' "$hc_emu" "$hc_kvm" >&2
load_end="$(bench_load)"

# ---- the section ---------------------------------------------------------------------------------------------------
# (rows.tsv holds "-" for a value that was not measured)
f3() { awk -v v="$1" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%.3f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
compute_table() {
    echo "| Kernel | Output (identical on every runner) | Guest instructions (exact) | Native wall / CPU s | QEMU wall / CPU s | Emulator wall / vCPU thread / process CPU s | Interpreter only wall / process CPU s |"
    echo "|---|---|---|---|---|---|---|"
    while IFS=$'\t' read -r k line insn nw nc qw qc ew et ep _ _ iw ic _; do
        echo "| $k | \`$line\` | $insn | $nw / $nc | $qw / $qc | $(f3 "$ew") / $(f3 "$et") / $(f3 "$ep") | $(f3 "$iw") / $(f3 "$ic") |"
    done <"$rows"
}
ratio_table() {
    echo "| Kernel | Emulator vs QEMU (wall) | Emulator vs QEMU (CPU) | Interpreter only vs QEMU (CPU) | Native vs QEMU (wall) | Emulator M instructions/s (vCPU thread) | Bytes allocated per run (last run; smallest) | Bytes per M instructions |"
    echo "|---|---|---|---|---|---|---|---|"
    while IFS=$'\t' read -r k _ insn nw _ qw qc ew et ep alloc alloc_min _ ic _; do
        echo "| $k | $(ratio "$qw" "$ew") | $(ratio "$qc" "$ep") | $(ratio "$qc" "$ic") | $(ratio "$qw" "$nw") | $(awk -v i="$insn" -v t="$et" 'BEGIN { printf "%.0f", i / t / 1e6 }') | $alloc; $alloc_min | $(awk -v a="$alloc_min" -v i="$insn" 'BEGIN { printf "%.1f", a / (i / 1e6) }') |"
    done <"$rows"
}
# geomean COLUMN_A COLUMN_B: geometric mean over kernels of $A / $B (1-based columns of rows.tsv)
geomean() { awk -F'\t' -v a="$1" -v b="$2" '$a != "-" && $b != "-" && $a + 0 > 0 && $b + 0 > 0 { s += log($a / $b); n++ } END { if (n) printf "%.2f", exp(s / n); else print "n/a" }' "$rows"; }
lowest() { awk -F'\t' -v a="$1" -v b="$2" '$b != "-" && $b + 0 > 0 { r = $a / $b; if (min == "" || r < min) { min = r; k = $1 } } END { printf "%.2f (%s)", min, k }' "$rows"; }
gm_wall="$(geomean 6 8)"
gm_cpu="$(geomean 7 10)"
gm_interp="$(if [ "$INTERP_RUNS" -gt 0 ]; then geomean 7 14; else echo n/a; fi)"
gm_native="$(geomean 6 4)"
low_wall="$(lowest 6 8)"
low_cpu="$(lowest 7 10)"
# The hand-written analysis (where the time goes, what is next: bench/emulator-suite-notes.md) travels with every
# run's section, so re-running the script keeps it next to the figures it discusses.
notes() { if [ -f bench/emulator-suite-notes.md ]; then echo; cat bench/emulator-suite-notes.md; fi; }
verdict() { awk -v g="$1" -v l="${2%% *}" 'BEGIN { print (g >= 0.5 && l >= 0.25) ? "met" : "not met" }'; }

kv() { grep -oE "(^| )$2=[^ ]+" <<<"$1" | cut -d= -f2 | tr -d '"'; } # kv TEXT KEY: every value of KEY
stat_of() { # TEXT KEY: "best / median" over the processes
    kv "$1" "$2" | sort -g | awk '{ v[NR] = $1 } END { if (!NR) { print "n/a"; exit } m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f / %.3f", v[1], m }'
}
median_of() { kv "$1" "$2" | sort -g | awk '{ v[NR] = $1 } END { if (!NR) { print "n/a"; exit } m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }
cold_row() { # LABEL TEXT
    if grep -q '^unavailable=' <<<"$2"; then
        echo "| $1 | unavailable: $(sed -n 's/^unavailable="\(.*\)"$/\1/p' <<<"$2" | head -n 1) | | | | | | |"
        return
    fi
    echo "| $1 | $(stat_of "$2" first_vm_ms) | $(stat_of "$2" second_vm_ms) | $(median_of "$2" vm_median_ms) | $(median_of "$2" empty_vm_median_ms) | $(median_of "$2" vm_allocated_bytes | cut -d. -f1) | $(stat_of "$2" process_start_best_ms) | $(stat_of "$2" posix_spawn_best_ms) |"
}
hc_row() { # LABEL TEXT
    if grep -q '^unavailable=' <<<"$2"; then
        echo "| $1 | unavailable: $(sed -n 's/^unavailable="\(.*\)"$/\1/p' <<<"$2" | head -n 1) | | | | |"
        return
    fi
    local trip call
    trip="$(kv "$2" round_trip_ns)"
    call="$(kv "$2" interface_call_ns)"
    echo "| $1 | $(kv "$2" count) | $trip | $call | $(ratio "$trip" "$call") | $(kv "$2" allocated_bytes_per_round_trip) |"
}
instructions_note="the emulator's exact count; the same ELF retires the same instruction stream on every runner (the kernels are deterministic)"
if [ $perf_ok = 1 ]; then
    instructions_note+="; perf stat -e instructions:u counts for the native runs: $(cut -f1,15 "$rows" | tr '\t\n' '= ' )"
else
    instructions_note+="; \`perf stat -e instructions:u\` is not supported on this machine (no hardware counters in this VM)"
fi
noisy=""
if awk -v l="${load_end%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n) }'; then
    noisy="**Noisy run: the load average (${load_end%% *} at the end) was above the $(nproc) cores, so other processes took CPU time from every runner; wall times are inflated and compare only within this run, and the CPU-time columns are the steadier figures. Re-take on a quiet machine before quoting absolute numbers.**"
fi

section="$(cat <<EOF
# Emulator benchmark suite

Command: \`$command_line\` (RUNS_NATIVE=$RUNS_NATIVE RUNS_QEMU=$RUNS_QEMU RUNS_EMU=$RUNS_EMU INTERP_RUNS=$INTERP_RUNS COLD_PROCS=$COLD_PROCS COLD_COUNT=$COLD_COUNT HC_COUNT=$HC_COUNT HC_RUNS=$HC_RUNS${SCALE:+ SCALE=$SCALE})
Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit
Machine: $(bench_machine), $(free -g | awk '/Mem:/ { print $2 }') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), Linux $(uname -r)
Load average: $load_start at the start, $load_end at the end
Toolchain: $(gcc --version | head -n 1); $(qemu-x86_64 --version | head -n 1); .NET $(dotnet --version)
$noisy

## Compute kernels (bench/guests/suite)

Each kernel is ONE static ELF (gcc -O2 -march=x86-64-v2, no libc) run natively, under \`qemu-x86_64\` (QEMU
user-mode TCG) and on the emulator backend through GuestRunner; times are the best of $RUNS_NATIVE native, $RUNS_QEMU QEMU and
$RUNS_EMU emulator runs (the emulator's in one process, each run a new VM that decodes and translates the guest afresh; run 1
also pays .NET's own warm-up), plus $INTERP_RUNS run(s) with the block compiler off (\`PARAVIRT_EMULATOR_JIT=0\`). CPU
is user+sys of the native and QEMU processes, and the vCPU thread's and the whole process's CPU time for the
emulator. QEMU's and native times include their process start-up (a few ms for a static ELF); the emulator's
include creating the VM but not the dotnet host's start-up. Guest instructions: $instructions_note.
Bytes allocated per run are the vCPU thread's during one run: decoded and translated blocks (a new VM decodes
afresh), so they follow the code's size, not the instructions executed (the steady state allocates nothing per
instruction: tests/Paravirt.Emulator.Tests/AllocationTests.cs).

$(compute_table)

Speed relative to QEMU TCG (QEMU's time / the runner's time; above 1 is faster than QEMU). "CPU" compares whole
processes (QEMU's user+sys with the emulator's process CPU time, which includes .NET's JIT and GC threads).

$(ratio_table)

Geometric mean over the kernels, emulator vs QEMU: **${gm_wall}x (wall)**, **${gm_cpu}x (CPU)**; interpreter only
${gm_interp}x (CPU); native ${gm_native}x (wall). Lowest kernel: ${low_wall} wall, ${low_cpu} CPU.
Goal (recorded, not asserted): geometric mean >= 0.5x QEMU and no kernel below 0.25x: $(verdict "$gm_wall" "$low_wall") by wall time,
$(verdict "$gm_cpu" "$low_cpu") by CPU time.

## Cold start (artifacts/guests/hello.elf, in process)

Milliseconds, "best / median" over $COLD_PROCS fresh processes. First VM: parse the image file, create guest memory,
the VM and its vCPU, load, run to the guest's exit (status 7), including .NET's JIT of that path (not the dotnet
host's own start-up). Second VM: the same with the parsed image. Steady state: the median of $COLD_COUNT further VMs.
Empty VM: guest memory, VM and vCPU created and disposed, nothing loaded or run (the rest of a VM's time is the
guest's $(kv "$cold_emu" instructions | head -n 1) instructions, decoded and interpreted cold on the emulator, and its hypercall exits). /bin/true: spawn and
wait, after one untimed spawn. Goal (recorded): the second VM in at most 0.3 ms.

| Backend | First VM ms | Second VM ms | Steady-state VM ms (median) | Empty VM ms (median) | Bytes allocated per VM (median) | /bin/true via Process.Start ms | /bin/true via posix_spawn ms |
|---|---|---|---|---|---|---|---|
$(cold_row "emulator" "$cold_emu")
$(cold_row "KVM (kvm_pvm)" "$cold_kvm")

## Hypercall round trip

A guest loop calls the hypercall page COUNT times; the host answers each at once on the bare vCPU (Run,
HypercallTrap.TryRead, the handler through an interface, HypercallTrap.Complete). Reference: the same handler
called through the same interface 10 million times in the same process (after a warm-up). Best of $HC_RUNS; Stopwatch around the whole
loop (BenchmarkDotNet is not used: both sides must run in the same process and the same seconds on a shared
machine, and a round trip only exists inside a running guest). Goal (recorded): at most 60 ns per round trip on the
emulator.

| Backend | COUNT | ns per round trip | ns per interface call | Round trip / interface call | Bytes allocated per round trip |
|---|---|---|---|---|---|
$(hc_row "emulator" "$hc_emu")
$(hc_row "KVM (kvm_pvm)" "$hc_kvm")
$(notes)
EOF
)"
printf '%s\n' "$section" >"$out/section.md"
printf '%s\n' "$section"
if [ "${NO_WRITE:-0}" != 1 ]; then
    bench/replace-section.sh bench/RESULTS.md "$out/section.md"
    echo "emulator-suite.sh: wrote its section of bench/RESULTS.md (geometric mean ${gm_wall}x QEMU by wall time, ${gm_cpu}x by CPU)" >&2
fi
