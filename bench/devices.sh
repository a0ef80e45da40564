#!/usr/bin/env bash
# Paravirtual device benchmarks on the emulator backend, written to bench/RESULTS.md as one section (replacing the previous run's).
#
#  - Block: the blk sample in mode=bench (1 MiB sequential writes + flush and reads, 4 requests per doorbell;
#    random 4 KiB writes and reads, 32 per doorbell) on a MIB MiB image file, against the host doing the same
#    reads and writes on the same file directly (RandomAccess, the calls the block device itself makes) in the same
#    process and run. The ratio is guest throughput / host throughput.
#  - Net: two net sample VMs on one in-memory NetSwitch: stop-and-wait ping-pong (ROUNDS round trips) and a
#    one-way stream of ROUNDS*10 1514-byte frames; frames per second VM to VM.
#
# Usage: bench/devices.sh            Environment: MIB (64), RAND (2048), ROUNDS (2000), RUNS (3), NO_APPEND=1
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_block_workload
ROUNDS="${ROUNDS:-2000}"
RUNS="${RUNS:-3}"

command -v gcc >/dev/null || { echo "devices.sh: gcc is required (apt-get install gcc)" >&2; exit 2; }
dotnet build samples/blk/blk.csproj -nologo -v q >/dev/null
dotnet build samples/net/net.csproj -nologo -v q >/dev/null
dotnet build bench/Paravirt.DeviceBench/Paravirt.DeviceBench.csproj -c Release -nologo -v q >/dev/null
bench=(dotnet bench/Paravirt.DeviceBench/bin/Release/net10.0/Paravirt.DeviceBench.dll)

work="$repo/artifacts/bench"
mkdir -p "$work"
blk_table="$("${bench[@]}" blk artifacts/guests "$work" "$MIB" "$RAND" "$RUNS")"
net_table="$("${bench[@]}" net artifacts/guests "$ROUNDS" "$RUNS")"

section="$(cat <<EOF

# Paravirtual devices (emulator backend)

Command: \`MIB=$MIB RAND=$RAND ROUNDS=$ROUNDS RUNS=$RUNS bench/devices.sh\`
Date: $(date -u '+%Y-%m-%d %H:%M UTC')
Machine: $(bench_machine); load average at the end: $(bench_load)
Backend: emulator (no /dev/kvm here). Best of $RUNS runs per row. Image file in artifacts/bench on $(df -T "$work" | awk 'NR==2 {print $2}').

Block (guest: samples/blk mode=bench; host: the same I/O with RandomAccess on the same file):

$blk_table

Net (two VMs, one NetSwitch, samples/net roles ping/pong and source/sink):

$net_table

Notes: the guest figures include the emulated guest's own work (request setup, ring handling, one doorbell per
batch) at the emulator's speed; the data itself is copied once by the host between the file and guest memory.
Both sides hit the page cache (no O_DIRECT), and the sequential write includes one fsync on both sides.
EOF
)"
bench_publish_section devices.sh "$section"
