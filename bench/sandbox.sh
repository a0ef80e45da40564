#!/usr/bin/env bash
# Sandbox benchmarks on the emulator backend (or BACKEND=kvm where KVM runs), written to bench/RESULTS.md as one
# section (replacing the previous run's): call round trips against a direct .NET call of the same function, a
# host-function call from the guest against a .NET delegate call, Snapshot()/Restore() of a 16 MiB sandbox after 1,
# 64 and 4096 dirty pages against memcpy of those pages, a sandbox from a snapshot against spawning /bin/true, and
# private host memory per idle sandbox for SANDBOXES sandboxes made from one snapshot. Every figure is a median of
# RUNS batches; every ratio is against a reference measured in the same process and run.
#
# Usage: bench/sandbox.sh            Environment: RUNS (5), SANDBOXES (1000), BACKEND (emulator), NO_APPEND=1
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-5}"
SANDBOXES="${SANDBOXES:-1000}"
BACKEND="${BACKEND:-emulator}"

command -v gcc >/dev/null || { echo "sandbox.sh: gcc is required (apt-get install gcc)" >&2; exit 2; }
dotnet build samples/plugin-guest/plugin-guest.csproj -c Release -nologo -v q >/dev/null
dotnet build bench/Paravirt.SandboxBench/Paravirt.SandboxBench.csproj -c Release -nologo -v q >/dev/null
mkdir -p artifacts
backend_detail=""
if [ "$BACKEND" = kvm ]; then
    dotnet build src/Paravirt.Cli/Paravirt.Cli.csproj -c Release -nologo -v q >/dev/null
    backend_detail="KVM: $(dotnet src/Paravirt.Cli/bin/Release/net10.0/paravirt.dll backends | awk '$1 == "kvm"' | sed -E 's/^kvm +available +//')"
fi
load_before="$(bench_load)"
table="$(dotnet bench/Paravirt.SandboxBench/bin/Release/net10.0/Paravirt.SandboxBench.dll artifacts/guests/plugin-guest.elf "$BACKEND" "$RUNS" "$SANDBOXES" 2>artifacts/sandbox-bench.err)"
detail="$(cat artifacts/sandbox-bench.err)"

section="$(cat <<EOF

# Sandboxes ($BACKEND backend)

Command: \`RUNS=$RUNS SANDBOXES=$SANDBOXES BACKEND=$BACKEND bench/sandbox.sh\`
Date: $(date -u '+%Y-%m-%d %H:%M UTC')
Machine: $(bench_machine); load average before: $load_before, at the end: $(bench_load)
Guest: samples/plugin-guest (C), 16 MiB. Median of $RUNS batches per row. $detail
$backend_detail

$table

Notes: a call's round trip is the host writing [name, args] into the guest's call buffer, one \`Run\` of the vCPU
through the guest's dispatcher (\`pv_sandbox_serve\`: parse, look the function up, call it, encode the result) to its
\`sandbox_return\` exit, then copying, validating and decoding the result; on the emulator the guest part runs at the
emulator's speed (see "Emulator vs QEMU TCG"). Dirty pages for the Snapshot/Restore rows are written host-side, one
byte per page spread over the 16 MiB, so the counts are exact (guest stores mark the same dirty page map). The
memcpy reference copies the same number of 4 KiB pages between two 16 MiB buffers. Private memory is
Private_Clean + Private_Dirty of /proc/self/smaps_rollup (pages that sandboxes share copy-on-write are not private).
Where a goal is missed, the reason: on the emulator a call runs the guest's dispatcher and function (the instruction
count above) through the emulator's block dispatch loop, whose per-block cost dominates short calls (see the
emulator's README for the path to faster translated code); the machine was shared with other builds (load above),
which inflates every row, references included. On KVM under kvm_pvm each exit costs tens of microseconds (see "KVM
under PVM"), a call is at least one exit, and a sandbox from a snapshot creates a whole KVM VM and vCPU (with PVM's
bootstrap); pooling VMs would remove that and is not done. Snapshot() after 4096 dirty pages (all of a 16 MiB
sandbox) folds the overlay into a new base file: a full copy, by design (later snapshots are cheap again).
EOF
)"
bench_publish_section sandbox.sh "$section"
