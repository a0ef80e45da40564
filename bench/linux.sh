#!/usr/bin/env bash
# The Linux personality against native Linux, in one run, written to bench/RESULTS.md as one section:
#  - start-up of samples/linux-c, linux-musl and linux-dotnet: milliseconds to main (the first byte of standard
#    output) and to exit, as a guest (GuestRunner: VM, library OS boot, ELF load, the program) and as the same binary
#    started natively (fork/exec, the program);
#  - the system call round trip: getppid in a loop (tests/linux-edge `syscalls N`) in the guest and natively.
# Best of RUNS each. The guest runs on the emulator when it can run the Linux personality (it declares
# BackendCapabilities.SupervisorMode), else on KVM inside the nested-KVM VM (tests/nested-kvm/run.sh), where both
# sides run under QEMU TCG and a VM exit costs tens of microseconds: those figures show where the time goes, not what
# hardware KVM costs.
#
# Usage: bench/linux.sh        Environment: RUNS (3), NO_APPEND=1 (print the section only)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"

for p in samples/linux-c samples/linux-musl samples/linux-dotnet tests/linux-edge tests/Paravirt.Scenarios src/Paravirt.Cli; do
    dotnet build "$p" -c Release -nologo -v q >/dev/null
done
work="$repo/artifacts/bench"
mkdir -p "$work"
out="$work/linux-bench.txt"

emulator="$(dotnet src/Paravirt.Cli/bin/Release/net10.0/paravirt.dll backends | awk '$1 == "emulator"')"
if [[ "$emulator" == *"[Linux executables: yes]"* ]]; then
    where="emulator (in this process)"
    PARAVIRT_SCENARIO_BACKEND=emulator dotnet tests/Paravirt.Scenarios/bin/Release/net10.0/Paravirt.Scenarios.dll \
        artifacts/guests --bench-linux "$RUNS" | tee "$out"
else
    where="KVM (kvm_amd) inside the nested-KVM VM under QEMU TCG: the emulator cannot run the Linux personality yet and this machine's /dev/kvm is kvm_pvm"
    NESTED_KVM_ARGS="--bench-linux $RUNS" NESTED_KVM_TIMEOUT="${NESTED_KVM_TIMEOUT:-900}" bash tests/nested-kvm/run.sh >/dev/null 2>&1 || true
    grep '^BENCH ' artifacts/nested-kvm/serial.log | tee "$out"
fi
grep -q '^BENCH syscall ' "$out" || { echo "linux.sh: no BENCH syscall line; see $out (and artifacts/nested-kvm/serial.log)" >&2; exit 1; }

field() { sed -nE "s/.*$1=([0-9.]+).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

section="$work/linux-section.md"
{
    echo "# Linux personality: start-up and system calls against native Linux"
    echo
    echo "Command: \`RUNS=$RUNS bench/linux.sh\`"
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "Machine: $(bench_machine); load average at the end: $(bench_load)"
    echo "Guest backend: $where. Native: the same static binaries, started with fork/exec $( [[ "$where" == KVM* ]] && echo 'inside the same VM' || echo 'on this machine')."
    echo
    echo "Start-up, milliseconds (best of $RUNS): to main = until the first byte of standard output, to exit = until the run ended."
    echo
    echo "| Sample | Native to main | Native to exit | Guest to main | Guest to exit | Guest/native (exit) |"
    echo "|---|---|---|---|---|---|"
    while read -r line; do
        s="$(awk '{print $3}' <<<"$line")"
        nm="$(field native_main_ms "$line")"; ne="$(field native_exit_ms "$line")"
        gm="$(field guest_main_ms "$line")"; ge="$(field guest_exit_ms "$line")"
        echo "| $s | $nm | $ne | $gm | $ge | $(ratio "$ge" "$ne")x |"
    done < <(grep '^BENCH startup ' "$out")
    echo
    line="$(grep '^BENCH syscall ' "$out")"
    nn="$(field native_ns "$line")"; gn="$(field guest_ns "$line")"
    echo "System call round trip (\`getppid\` in a loop; best of $RUNS):"
    echo
    echo "| | ns per call | calls |"
    echo "|---|---|---|"
    echo "| native Linux | $nn | $(field native_calls "$line") |"
    echo "| Linux personality | $gn | $(field guest_calls "$line") |"
    echo
    echo "Guest/native: $(ratio "$gn" "$nn")x. In the guest a system call is \`syscall\` -> the library OS's entry at CPL 0 ->"
    echo "\`sysretq\`, with no VM exit, and its \`getppid\` returns a constant; Linux's goes through its full entry and exit"
    echo "path (with the speculation mitigations this CPU model asks for). The start-up adds what a native start does not have: creating the VM, the library OS's"
    echo "boot (its page tables, the frame allocator), and a hypercall for each clock read, console write and random"
    echo "fill the program makes (glibc and .NET read the clock often; there is no vDSO). Raw lines:"
    echo
    echo '```'
    cat "$out"
    echo '```'
} >"$section"

bench_publish_section linux.sh "$(cat "$section")"
