#!/usr/bin/env bash
# Runs the KVM backend for real on a machine without /dev/kvm: boots a Debian kernel under QEMU's software
# emulation (TCG) with an emulated AMD CPU that has SVM, loads kvm_amd inside it, and runs the NativeAOT-published
# scenario program (tests/Paravirt.Scenarios) there against the guest images in artifacts/guests. Prints the serial
# log and fails when a scenario fails, when none ran, or when the run did not finish (kernel panic, timeout).
# See ../shared/KVM-UNDER-TCG.md (from the repository root) for the facts behind each step.
#
# Usage: tests/nested-kvm/run.sh [scenario-name ...]      (no names: all scenarios)
# Environment: NESTED_KVM_TIMEOUT (seconds, default 300), NESTED_KVM_SKIP_PUBLISH=1 (reuse the last publish),
#              NESTED_KVM_ARGS (other arguments for the scenario program instead of scenario names: bench/linux.sh).
# Caches the kernel under artifacts/nested-kvm/ (ignored by git); a fresh clone builds everything it needs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$repo/artifacts/nested-kvm"
timeout_s="${NESTED_KVM_TIMEOUT:-300}"
mkdir -p "$cache"

log() { printf 'nested-kvm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

# --- 1. Host tools (installed by the project's one install step, eng/install-deps.sh) ------------------------------
bash "$repo/eng/install-deps.sh"
cc=""
for c in clang clang-14 clang-15 clang-16; do
    if command -v "$c" >/dev/null; then cc="$c"; break; fi
done
[ -n "$cc" ] || die "no clang for the NativeAOT publish (eng/install-deps.sh installs it)"
busybox=/bin/busybox
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not statically linked (apt-get install busybox-static)"; fi

# --- 2. Kernel (Debian's current linux-image-amd64, extracted, not installed) ---------------------------------------
resolve_kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ && !found { print $2; found = 1 }'
}
kpkg="$(resolve_kernel_pkg || true)"
if [ -z "$kpkg" ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    kpkg="$(resolve_kernel_pkg)"
fi
[ -n "$kpkg" ] || die "cannot resolve the kernel package behind linux-image-amd64 (apt-cache depends)"
kdir="$cache/kernel/$kpkg"
modules=(virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko drivers/crypto/ccp/ccp.ko arch/x86/kvm/kvm-amd.ko)
if [ ! -f "$kdir/.ready" ]; then
    log "downloading $kpkg"
    rm -rf "$kdir" && mkdir -p "$kdir/deb" "$kdir/modules"
    # (apt warns that it downloads unsandboxed as root into a directory _apt cannot read: harmless)
    (cd "$kdir/deb" && apt-get download "$kpkg" >/dev/null 2>&1) || die "apt-get download $kpkg failed"
    dpkg -x "$kdir"/deb/*.deb "$kdir/root"
    # Keep only what the VM needs (the package unpacks to about 400 MB).
    cp "$(ls "$kdir"/root/boot/vmlinuz-* | head -n1)" "$kdir/vmlinuz"
    moddir="$(ls -d "$kdir"/root/lib/modules/* | head -n1)/kernel"
    for m in "${modules[@]}"; do
        [ -f "$moddir/$m" ] || die "$kpkg lacks $m (compressed modules are not supported by busybox insmod)"
        cp "$moddir/$m" "$kdir/modules/"
    done
    rm -rf "$kdir/deb" "$kdir/root"
    touch "$kdir/.ready"
fi
kver="${kpkg#linux-image-}"
vmlinuz="$kdir/vmlinuz"

# --- 2b. gdb for the debugging scenarios: Debian's gdb-minimal (no Python), extracted, not installed -----------------
# (it conflicts with the host's full gdb; its libraries are a subset of what that gdb already pulled in)
gdbdir="$cache/gdb-minimal"
if [ ! -f "$gdbdir/.ready" ]; then
    log "downloading gdb-minimal"
    rm -rf "$gdbdir" && mkdir -p "$gdbdir/deb"
    (cd "$gdbdir/deb" && apt-get download gdb-minimal >/dev/null 2>&1) || die "apt-get download gdb-minimal failed"
    dpkg -x "$gdbdir"/deb/*.deb "$gdbdir/root"
    cp "$gdbdir/root/usr/bin/gdb" "$gdbdir/gdb"
    rm -rf "$gdbdir/deb" "$gdbdir/root"
    touch "$gdbdir/.ready"
fi

# --- 3. Guest images and the NativeAOT scenario program -------------------------------------------------------------
cd "$repo"
missing=0
# What each sample builds: a Linux executable in artifacts/guests/linux/, a Paravirt guest as NAME.elf; the host
# programs (plugin-host, kvstore-host) build no image and are not checked, so a complete set is not rebuilt.
for p in samples/*/*.csproj; do
    name="$(basename "$p" .csproj)"
    if grep -q '<ParavirtLinuxGuest>true' "$p"; then image="artifacts/guests/linux/$name"
    elif grep -q '<ParavirtGuest>true\|<ParavirtGuestLanguage>' "$p"; then image="artifacts/guests/$name.elf"
    else continue; fi
    [ -f "$image" ] || missing=1
done
if [ "$missing" = 1 ]; then
    log "building the sample guests"
    for p in samples/*/*.csproj; do dotnet build "$p" -c Release -nologo -v q >/dev/null; done
fi
mkdir -p artifacts/guests
ls artifacts/guests/*.elf >/dev/null 2>&1 || log "warning: no guest images in artifacts/guests; the scenarios that boot them will fail"

publish="$cache/publish"
if [ "${NESTED_KVM_SKIP_PUBLISH:-0}" != 1 ] || [ ! -x "$publish/Paravirt.Scenarios" ]; then
    log "publishing tests/Paravirt.Scenarios with NativeAOT ($cc)"
    rm -rf "$publish"
    dotnet publish tests/Paravirt.Scenarios/Paravirt.Scenarios.csproj -c Release -r linux-x64 -nologo -v q \
        -p:PublishAot=true -p:InvariantGlobalization=true -p:CppCompilerAndLinker="$cc" -o "$publish" >"$cache/publish.log" 2>&1 \
        || { cat "$cache/publish.log" >&2; die "dotnet publish failed"; }
fi
scenarios="$publish/Paravirt.Scenarios"
[ -x "$scenarios" ] || die "the publish produced no $scenarios"

# --- 4. initramfs ---------------------------------------------------------------------------------------------------
root="$cache/initramfs"
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,modules,guests,scenarios,usr/bin}
cp "$busybox" "$root/bin/busybox"
for a in sh mount insmod poweroff cat echo ls ifconfig; do ln -s busybox "$root/bin/$a"; done
cp "$gdbdir/gdb" "$root/usr/bin/gdb"
cp "$kdir"/modules/*.ko "$root/modules/"
cp "$scenarios" "$root/scenarios/"
cp artifacts/guests/*.elf "$root/guests/" 2>/dev/null || true
# static Linux executables (samples/linux-*): run natively and on the Linux personality by LinuxScenarios
if [ -d artifacts/guests/linux ]; then
    mkdir -p "$root/guests/linux"
    cp artifacts/guests/linux/* "$root/guests/linux/" 2>/dev/null || true
fi
# The glibc pieces the program and gdb link against, at the same paths.
for lib in $( (ldd "$scenarios"; ldd "$gdbdir/gdb") | grep -o '/[^ ]*' | sort -u); do

    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
# OpenSSL, which ldd does not list: the runtime dlopens it for the cryptographic random numbers that MessagePack's
# UntrustedData security seeds its collision-resistant hashing with (the sandbox scenario); without it the program
# aborts with "No usable version of libssl was found".
for name in libssl.so.3 libcrypto.so.3; do
    # awk reads to the end (no early exit): under pipefail an early exit can kill ldconfig with SIGPIPE mid-write,
    # and the failed assignment would end this script silently (seen on a first run from a clean clone).
    lib="$(ldconfig -p | awk -v n="$name" '$1 == n && /x86-64/ && !found { print $NF; found = 1 }')"
    if [ -n "$lib" ]; then
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    fi
done
filter=""
if [ $# -gt 0 ]; then filter=" $*"; fi
# NESTED_KVM_ARGS replaces the scenario names with other arguments for the scenario program (bench/linux.sh:
# "--bench-linux 3"); the run is then a measurement, not a test: its output is printed, nothing is counted.
if [ -n "${NESTED_KVM_ARGS:-}" ]; then filter=" $NESTED_KVM_ARGS"; fi
cat >"$root/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(for m in "${modules[@]}"; do printf '%s ' "$(basename "$m")"; done); do
    insmod /modules/\$m || echo "NESTED-KVM insmod \$m failed"
done
[ -c /dev/kvm ] || echo "NESTED-KVM /dev/kvm is missing after loading kvm-amd"
ifconfig lo 127.0.0.1 up   # the GDB stub scenarios connect gdb to the stub over loopback
/scenarios/Paravirt.Scenarios /guests$filter
echo "NESTED-KVM scenarios exited with \$?"
poweroff -f
EOF
chmod +x "$root/init"
initrd="$cache/initrd.cpio.gz"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$initrd")

# --- 5. Boot and parse ------------------------------------------------------------------------------------------------
serial="$cache/serial.log"
log "booting $kver under QEMU TCG (-cpu max: AMD with SVM), timeout ${timeout_s}s"
started=$SECONDS
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 1024 -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$initrd" -append 'console=ttyS0 quiet panic=-1 loglevel=4' </dev/null \
    | tr -d '\r' | sed -E -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/([^ ])(SCENARIOS? )/\1\n\2/g' >"$serial"
qemu_rc=${PIPESTATUS[0]}
set -e
cat "$serial"
log "QEMU exited with $qemu_rc after $((SECONDS - started)) s"

if [ -n "${NESTED_KVM_ARGS:-}" ]; then
    log "ran the scenario program with '$NESTED_KVM_ARGS' (a measurement: nothing counted)"
    exit "$qemu_rc"
fi

# (the firmware's terminal escapes are stripped and result lines split from any text before them, above, so every
# result line starts its line: eng/test.sh counts them the same way)
passed=$(grep -c '^SCENARIO [^ ]* PASS' "$serial" || true)
failed=$(grep -c '^SCENARIO [^ ]* FAIL' "$serial" || true)
if [ "$qemu_rc" = 124 ]; then
    log "FAILED: the VM did not power off within ${timeout_s}s"
    exit 1
fi
if ! grep -q '^SCENARIOS DONE ' "$serial"; then
    log "FAILED: no 'SCENARIOS DONE' line (the program crashed or the kernel panicked); see the log above"
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    log "FAILED: $failed scenario(s) failed, $passed passed:"
    grep '^SCENARIO [^ ]* FAIL' "$serial" >&2
    exit 1
fi
if [ "$passed" -eq 0 ]; then
    log "FAILED: no scenario ran"
    exit 1
fi
log "OK: $passed scenario(s) passed on KVM (nested under TCG)"
