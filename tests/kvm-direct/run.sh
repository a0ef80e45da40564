#!/usr/bin/env bash
# Runs the KVM scenarios (tests/Paravirt.Scenarios) directly on this machine's /dev/kvm, without nesting, when the
# KVM backend can use it: with hardware virtualization (kvm_intel, kvm_amd) or under kvm_pvm (PVM, no hardware
# virtualization; see src/Hypervisor.Core/Backends/Kvm/README.md), which is what this project's development and CI
# machines have. Where the backend cannot, prints one "Skipped" line with the probe's reason and succeeds:
# tests/nested-kvm/run.sh still runs the same scenarios on kvm_amd inside QEMU.
#
# Usage: tests/kvm-direct/run.sh [configuration] [scenario-name ...]   (configuration: Release by default)
# Expects a built tree (make build): the CLI for the probe, the scenario program, artifacts/guests/*.elf.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
config="${1:-Release}"
shift || true
cd "$repo"

cli="src/Paravirt.Cli/bin/$config/net10.0/paravirt.dll"
scenarios="tests/Paravirt.Scenarios/bin/$config/net10.0/Paravirt.Scenarios.dll"
for f in "$cli" "$scenarios"; do
    [ -f "$f" ] || { echo "kvm-direct: error: $f is missing (make build)" >&2; exit 2; }
done

probe="$(dotnet "$cli" backends | awk '$1 == "kvm"')"
if [[ "$probe" != kvm*" available "* ]]; then
    reason="$(sed -E 's/^kvm +unavailable +//' <<<"$probe")"
    echo "  Skipped kvm-direct scenarios: the KVM backend cannot run here ($reason)"
    exit 0
fi
echo "kvm-direct: running the KVM scenarios on this machine's /dev/kvm: $(sed -E 's/^kvm +available +//' <<<"$probe")"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
timeout "${KVM_DIRECT_TIMEOUT:-300}" dotnet "$scenarios" artifacts/guests "$@" | tee "$out"
status=${PIPESTATUS[0]}
if ! grep -q '^SCENARIOS DONE ' "$out"; then
    echo "kvm-direct: FAILED: no 'SCENARIOS DONE' line (exit status $status)" >&2
    exit 1
fi
exit "$status"
