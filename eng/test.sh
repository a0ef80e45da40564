#!/usr/bin/env bash
# Runs every test: the xunit suites (emulator backend, ABI, loader, CLI; KVM tests skip with a reason where
# the KVM backend cannot run), the KVM scenarios directly on this machine's /dev/kvm where the backend can use it
# (kvm_pvm on this project's machines: tests/kvm-direct/run.sh, one "Skipped" line elsewhere), and then the same
# scenarios on kvm_amd inside a Linux guest under QEMU TCG (tests/nested-kvm/run.sh). Prints one closing line:
# "Total: N passed, N failed, N skipped" (CI reads it), and exits non-zero when anything failed or did not run.
#
# The xunit counts come from the TRX file each test project writes (its ResultSummary), not from console text:
# a test project whose host crashed before writing one, or whose run was aborted, counts as a failure.
set -uo pipefail
config="${1:-Release}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
log="$(mktemp)"
results="$(mktemp -d)"
trap 'rm -rf "$log" "$results"' EXIT
status=0

# The test projects (IsTestProject true): each must leave exactly one TRX file.
mapfile -t projects < <(grep -l '<IsTestProject>true</IsTestProject>' tests/*/*.csproj | sort)

# Each project writes its TRX under its own TestResults/ (a shared --results-directory lets projects that finish in
# the same millisecond overwrite each other's file); old ones are removed first so that only this run's count.
for p in "${projects[@]}"; do rm -f "$(dirname "$p")"/TestResults/*.trx; done
dotnet test Paravirt.sln -c "$config" --no-build -nologo -v:q --logger trx --logger "console;verbosity=normal" 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
for p in "${projects[@]}"; do
    name="$(basename "$p" .csproj)"
    trx=("$(dirname "$p")"/TestResults/*.trx)
    if [ ! -f "${trx[0]}" ] || [ "${#trx[@]}" -ne 1 ]; then
        echo "test.sh: $name left ${#trx[@]} TRX files where one was expected (did its test host crash?)" >&2
        echo "$name aborted" > "$results/$name"
        continue
    fi
    # <ResultSummary outcome="..."> <Counters total=".." executed=".." passed=".." failed=".." error=".." timeout=".." aborted=".." .../>
    summary="$(tr -d '\r\n' < "${trx[0]}" | grep -o '<ResultSummary outcome="[A-Za-z]*">.*<Counters [^>]*>' )"
    counter() { grep -o " $1=\"[0-9]*\"" <<<"$summary" | grep -o '[0-9]*' || echo 0; }
    outcome="$(grep -o 'outcome="[A-Za-z]*"' <<<"$summary" | head -n1 | cut -d'"' -f2)"
    # Skipped tests are counted in total but not in executed (the TRX logger leaves notExecuted at 0 for them).
    echo "$name $outcome $(counter passed) $(( $(counter failed) + $(counter error) + $(counter timeout) + $(counter aborted) )) $(( $(counter total) - $(counter executed) ))" > "$results/$name"
done

bash tests/kvm-direct/run.sh "$config" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

bash tests/nested-kvm/run.sh 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# xunit: one line per project from its TRX. Scenarios: the scenario programs' own result lines
# ("SCENARIO name PASS|FAIL|SKIP ...") and kvm-direct's one "Skipped" line where it cannot run here.
read -r passed failed skipped < <(
    {
        cat "$results"/*
        awk '/^SCENARIO [^ ]+ PASS/ { print "scenario Completed 1 0 0" }
             /^SCENARIO [^ ]+ FAIL/ { print "scenario Failed 0 1 0" }
             /^SCENARIO [^ ]+ SKIP/ || /^  Skipped kvm-direct / { print "scenario Completed 0 0 1" }' "$log"
    } | awk '
        $2 == "aborted" { f++; next }
        { p += $3; f += $4; s += $5; if ($2 != "Completed" && $2 != "Passed" && $2 != "Warning" && $4 == 0) f++ }
        END { print p+0, f+0, s+0 }')
if [ "$passed" -eq 0 ]; then status=1; fi
if [ "$failed" -ne 0 ]; then status=1; fi
echo "Total: $passed passed, $failed failed, $skipped skipped"
exit $status
