#!/usr/bin/env bash
# Installs the Debian packages Paravirt's build and tests need, only those that are missing.
#   gcc                      builds the C guest runtime and samples
#   qemu-system-x86, busybox-static, cpio   the nested-KVM harness (KVM inside a Linux guest under QEMU TCG)
#   qemu-user                the emulator benchmark's reference (qemu-x86_64)
#   clang-14 / clang, zlib1g-dev   NativeAOT publish of the nested-KVM scenario runner
#   linux-libc-dev           /usr/include/linux/kvm.h for the KVM layout tests; asm/unistd_64.h for the Linux personality
#   libc6-dev                the static glibc (libc.a, libm.a, libpthread) and headers: samples/linux-c, tests/linux-edge,
#                            and the static NativeAOT link of samples/linux-dotnet
#   musl-tools               musl-gcc and the static musl: samples/linux-musl
#   gcc-mingw-w64-x86-64-win32  the real WinHvPlatform headers: WHP layouts and signatures are checked against them
#   afl++                    afl-fuzz 4.04c, the engine of the long fuzz campaigns (fuzz/run-campaign.sh, with SharpFuzz)
#   gdb                      the GDB stub, crash reports and core files are tested with the real debugger
set -euo pipefail
want=(gcc make qemu-system-x86 busybox-static cpio qemu-user clang linux-libc-dev libc6-dev musl-tools zlib1g-dev binutils gcc-mingw-w64-x86-64-win32 afl++ gdb)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
