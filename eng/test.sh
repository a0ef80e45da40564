#!/usr/bin/env bash
# Runs every test: the xunit suites (emulator backend, ABI, loader, CLI; KVM tests skip with a reason where
# the KVM backend cannot run), the KVM scenarios directly on this machine's /dev/kvm where the backend can use it
# (kvm_pvm on this project's machines: tests/kvm-direct/run.sh, one "Skipped" line elsewhere), and then the same
# scenarios on kvm_amd inside a Linux guest under QEMU TCG (tests/nested-kvm/run.sh). Prints one closing line:
# "N passed, N failed, N skipped".
set -uo pipefail
config="${1:-Release}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
log="$(mktemp)"
status=0

dotnet test Paravirt.sln -c "$config" --no-build -nologo -v:q --logger "console;verbosity=normal" 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

bash tests/kvm-direct/run.sh "$config" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

bash tests/nested-kvm/run.sh 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Count the per-test result lines dotnet test prints at normal verbosity ("  Passed Name [1 ms]") and the
# nested scenarios' result lines ("SCENARIO name PASS ...").
read -r passed failed skipped < <(awk '
  /^  Passed / { p++ } /^  Failed / { f++ } /^  Skipped / { s++ }
  /^SCENARIO [^ ]+ PASS/ { p++ } /^SCENARIO [^ ]+ FAIL/ { f++ }
  END { print p+0, f+0, s+0 }' "$log")
rm -f "$log"
if [ "$passed" -eq 0 ]; then status=1; fi
if [ "$failed" -ne 0 ]; then status=1; fi
echo "Total: $passed passed, $failed failed, $skipped skipped"
exit $status
