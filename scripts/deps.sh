#!/usr/bin/env bash
# Installs (as root) or names (otherwise) the Debian packages cloudbox's
# build, VM runner and tests need. Usage: scripts/deps.sh [run|test]
set -euo pipefail
need=(
  "go:golang"                       # checked, not installed: see README
  "qemu-system-x86_64:qemu-system-x86"
  "qemu-system-aarch64:qemu-system-arm"
  "sfdisk:fdisk"
  "fsck.vfat:dosfstools"
  "mdir:mtools"
  "unsquashfs:squashfs-tools"
  "e2fsck:e2fsprogs"
  "debugfs:e2fsprogs"
  "update-ca-certificates:ca-certificates"
  "curl:curl"
  "rclone:rclone"                   # the shared folders' WebDAV tests (a real client)
  "ip:iproute2"
  "nft:nftables"
  "iperf3:iperf3"
  "tcpdump:tcpdump"
  "ping:iputils-ping"
  "dig:dnsutils"
  "sysctl:procps"
  "avahi-daemon:avahi-daemon"       # mDNS interop tests (in namespaces, private D-Bus)
  "avahi-browse:avahi-utils"
  "dbus-daemon:dbus-daemon"
  "unshare:util-linux"
  "qemu-mipsel-static:qemu-user-static" # router targets' unit tests (make test-router)
  "busybox:busybox"                 # OpenWrt maintainer scripts in a chroot (image/openwrt)
  "chroot:coreutils"
  "sipp:sip-tester"                # VoIP tests (SIP UAC/UAS with RTP)
  "chromium:chromium"               # the panel's browser tests (headless, CDP over a pipe)
  "certutil:libnss3-tools"          # HTTPS browser test: trust the box's CA in Chromium's NSS db
  "ffmpeg:ffmpeg"                   # stream tests: RTP ingest, decoding checks (ffprobe)
  "gcc:gcc"                         # go test -race needs cgo
  "/usr/include/stdio.h:libc6-dev"
  "/usr/lib/systemd/boot/efi/systemd-bootx64.efi:systemd-boot-efi"
  "/usr/share/OVMF/OVMF_CODE_4M.fd:ovmf"
)
missing=()
for entry in "${need[@]}"; do
  cmd=${entry%%:*} pkg=${entry#*:}
  if [[ $cmd == /* ]]; then
    [ -e "$cmd" ] || missing+=("$pkg")
    continue
  fi
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/sbin/$cmd" ] && ! [ -x "/usr/sbin/$cmd" ]; then
    if [ "$cmd" = go ]; then
      echo "Go is not installed: install Go 1.26 or newer from the Go project's downloads (Debian's golang package is too old)" >&2
      exit 1
    fi
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -eq 0 ]; then
  echo "installing: $pkgs" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
else
  echo "missing tools; install them with:" >&2
  echo "  sudo apt-get install -y $pkgs" >&2
  exit 1
fi
