#!/usr/bin/env bash
# One long coverage-guided campaign under afl-fuzz (AFL++ from Debian, eng/install-deps.sh) with SharpFuzz:
#
#   fuzz/run-campaign.sh HARNESS [EXECUTIONS [SECONDS]]   (default 10000000 executions, no time limit)
#
# Builds fuzz/Paravirt.Fuzz into artifacts/fuzz/bin-COMMIT (COMMIT: the last one that changed src or fuzz; campaigns
# of one commit share it, and a campaign of a newer commit never rebuilds under a running one), instruments Paravirt's own assemblies for coverage (sharpfuzz, the local dotnet
# tool in .config/dotnet-tools.json), seeds afl-fuzz with fuzz/corpus/HARNESS and runs
# it until about EXECUTIONS executions (-E). Findings land in artifacts/fuzz/HARNESS/findings/default/{crashes,hangs};
# each one becomes a regression: copy it into fuzz/corpus/HARNESS (the smoke run in make test replays the corpus)
# and fix the bug. A second run with the same HARNESS resumes. On exit it prints one summary line for
# docs/security.md. The machine is shared: run it with nice, one or two campaigns at a time.
set -euo pipefail
harness="${1:?usage: fuzz/run-campaign.sh HARNESS [EXECUTIONS]}"
executions="${2:-10000000}"
seconds="${3:-}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/artifacts/fuzz/$harness"
# The last commit that changed what is fuzzed (a commit of tests or docs only reuses the instrumented build).
commit="$(git -C "$root" log -1 --format=%h -- src fuzz)$(git -C "$root" diff --quiet HEAD -- src fuzz || echo -dirty)"
bin="$root/artifacts/fuzz/bin-$commit"
seeds="$root/fuzz/corpus/$harness"
[ -d "$seeds" ] || { echo "run-campaign: no corpus $seeds (harnesses: $(ls "$root/fuzz/corpus" | tr '\n' ' '))" >&2; exit 64; }
command -v afl-fuzz >/dev/null || { echo "run-campaign: afl-fuzz is missing: bash eng/install-deps.sh" >&2; exit 69; }

mkdir -p "$work/cwd"
mkdir -p "$root/artifacts/fuzz"
exec 9>"$root/artifacts/fuzz/.build.lock"
flock 9                              # two campaigns starting together build once
if [ ! -f "$bin/.instrumented" ] || [[ "$commit" == *-dirty ]]; then
  rm -rf "$bin"
  dotnet build "$root/fuzz/Paravirt.Fuzz/Paravirt.Fuzz.csproj" -c Release -o "$bin" -nologo -v:q -clp:ErrorsOnly
  (cd "$root" && dotnet tool restore >/dev/null)
  for dll in Paravirt.Hypervisor.Core.dll Paravirt.Hypercall.Abi.dll paravirt.dll; do
    (cd "$root" && dotnet tool run sharpfuzz "$bin/$dll") >/dev/null
  done
  touch "$bin/.instrumented"
fi
flock -u 9

export AFL_SKIP_BIN_CHECK=1          # the target is dotnet; coverage comes from the instrumented assemblies
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_AUTORESUME=1
export AFL_NO_AFFINITY=1              # a shared machine: do not pin (afl refuses a third campaign on 2 cores otherwise)
# Harness scratch files (the block harness's disk image) on tmpfs when there is one: every flush is an fsync, which
# costs a disk write on ext4 and nothing on tmpfs; the host's code path is the same (block: 357 -> ~2,600 runs/s).
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
export PARAVIRT_FUZZ_LOG="$work/exceptions.log"   # each finding's input and exception (afl-fuzz keeps only the input)
export DOTNET_TieredPGO=0            # steadier timing between executions
input="$seeds"
[ -f "$work/findings/default/fuzzer_stats" ] && input="-"   # resume where the last campaign stopped
cd "$work/cwd"                       # an empty directory: the cli harness can only name files in here
afl-fuzz -i "$input" -o "$work/findings" -E "$executions" ${seconds:+-V "$seconds"} -t 10000 -m none -- dotnet "$bin/Paravirt.Fuzz.dll" "$harness" >"$work/afl.log" 2>&1 || {
  echo "run-campaign: afl-fuzz failed; the end of $work/afl.log:" >&2; tail -20 "$work/afl.log" >&2; exit 70; }

stats="$work/findings/default/fuzzer_stats"
get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
printf '| %s | %s | %s | %s | %s | %s/s | %s | %s | %s |\n' "$harness" "$(date -u +%Y-%m-%d)" "$commit" \
  "$(get execs_done)" "$(get run_time)s" "$(get execs_per_sec)" "$(get bitmap_cvg)" "$(get corpus_count)" \
  "$(get saved_crashes) crashes, $(get saved_hangs) hangs" | tee -a "$work/summary.md"
