# bench/lib.sh - what the benchmark scripts share. Source it first: `. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
# It sets `repo` (the repository root) and changes to it, so every script names paths from the root.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# The CPU model and core count, as every section's "Machine:" line starts.
bench_machine() {
    printf '%s, %s cores' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" "$(nproc)"
}

# The 1, 5 and 15 minute load averages now (a section records the load its figures were taken under).
bench_load() {
    cut -d' ' -f1-3 /proc/loadavg
}

# Sets the block workload of bench/Paravirt.DeviceBench, which devices.sh and kvm-pvm.sh both run: a MIB MiB image
# file (64) and RAND random 4 KiB requests (2048), unless the environment says otherwise.
bench_block_workload() {
    MIB="${MIB:-64}"
    RAND="${RAND:-2048}"
}

# Usage: bench_publish_section SCRIPT SECTION_TEXT
# Prints the section and, unless NO_APPEND=1, puts it into bench/RESULTS.md in place of the previous run's (each
# script owns one section; see bench/replace-section.sh).
bench_publish_section() {
    local script="$1" section="$2" tmp
    printf '%s\n' "$section"
    if [ "${NO_APPEND:-0}" != 1 ]; then
        tmp="$(mktemp)"
        printf '%s\n' "$section" >"$tmp"
        bash "$repo/bench/replace-section.sh" "$repo/bench/RESULTS.md" "$tmp"
        rm -f "$tmp"
        echo "$script: wrote its section of bench/RESULTS.md" >&2
    fi
}
