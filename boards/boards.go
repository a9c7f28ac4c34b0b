// Package boards describes the hardware cloudbox is built for: the Go
// architecture, the kernel and firmware modules, the boot files, the console
// and the partition layout of each image board, and the package architecture
// of each router board (OpenWrt routers keep their own firmware and get
// cloudbox as a package). It is data for the image and package builders and
// the VM runner; nothing here runs on a box.
package boards

import (
	"fmt"
	"sort"
	"strings"
)

// Partition sizes shared by every gokrazy-style board, in bytes. The layout is
// the one gokrazy's init and update code expect (see
// shared/docs/gokrazy-image.md §2): a 4 MiB gap for the partition tables, a
// 256 MiB FAT boot partition (gokrazy uses 100 MiB; two slots of the arm64
// or Pi kernel files need about 115 MiB), two 500 MiB root slots and /perm
// in the rest.
const (
	MiB = 1 << 20

	FirstPartitionOffset = 4 * MiB   // LBA 8192
	BootSize             = 256 * MiB // p1, FAT16B (4 KiB clusters): the shared files and two slots of kernel files
	RootSize             = 500 * MiB // p2 and p3, squashfs
	// MinPermSize is the smallest /perm we accept when sizing an image.
	MinPermSize = 64 * MiB
)

// MinImageSize is the smallest disk image a board accepts.
const MinImageSize = FirstPartitionOffset + BootSize + 2*RootSize + MinPermSize + 1*MiB

// Board is one hardware profile. Boards are immutable values; use Lookup or
// All to get them.
type Board struct {
	// Name is the identifier used on the command line (--board).
	Name string
	// Description is a one-line summary for `cloudbox boards`.
	Description string

	// GOARCH, GOARM and GOMIPS select the Go toolchain target (GOOS is
	// always linux). GOMIPS is "softfloat" for the MIPS routers: their
	// kernels often lack the FPU emulator hard-float Go code relies on.
	GOARCH string
	GOARM  string
	GOMIPS string

	// PackageArch is, for a router board, the architecture name of the
	// router's package manager (OpenWrt's opkg, `opkg print-architecture`),
	// e.g. "mipsel_24kc". Router boards have no kernel, firmware or image:
	// `cloudbox package` builds an installable package for them, and
	// cloudboxd is built with the router profile (Tags). Empty for image
	// boards.
	PackageArch string
	// Tags are the build tags of this board's cloudboxd: "router" for
	// router boards (see internal/buildinfo), none for image boards.
	Tags []string
	// QEMUUser is the qemu user-mode emulator that runs this board's Linux
	// binaries on another architecture (tests run the router targets'
	// unit tests with it), from Debian's qemu-user-static.
	QEMUUser string

	// KernelModule and FirmwareModule are Go module paths whose module
	// directories hold the boot payload; their versions are pinned in go.mod.
	// FirmwareModule is empty for boards that boot without vendor firmware.
	KernelModule   string
	FirmwareModule string

	// KernelFiles are glob patterns, relative to the kernel module directory,
	// copied to the boot partition. FirmwareFiles likewise for the firmware
	// module.
	KernelFiles   []string
	FirmwareFiles []string

	// Console is the kernel console= arguments for this board; the last one
	// is /dev/console, where init and cloudboxd print.
	Console string
	// RootDevice is the kernel's name for the disk the image is written to,
	// without the partition number (e.g. "/dev/mmcblk0p"); the image uses
	// PARTUUIDs, this is informational and used for the VM disk bus.
	RootDevice string
	// HybridMBR says whether LBA 0 carries the hybrid MBR the Raspberry Pi
	// boot ROM needs (a FAT entry next to the protective GPT entry).
	HybridMBR bool
	// ConfigTxt says whether config.txt (Raspberry Pi firmware settings) is
	// written to the boot partition.
	ConfigTxt bool
	// UEFIBootManager is the path, on the build host, of a UEFI boot
	// manager installed as the removable-media boot program
	// (/EFI/BOOT/<UEFIBootName>) with a loader entry for the kernel; empty
	// for boards that boot without UEFI. The kernel is EFI-stub capable,
	// but firmware passes no command line to it, hence the boot manager.
	UEFIBootManager string
	UEFIBootName    string
	// QEMU is the qemu-system binary that can boot this board, or empty when
	// the board cannot be emulated (the Pi's firmware and SoC).
	QEMU string
}

// Router is the build tag of the router profile: cloudboxd for small
// routers, without what they cannot afford (see internal/buildinfo).
const Router = "router"

var all = []Board{
	{
		Name:        "openwrt-mipsle",
		Description: "MIPS little-endian (ramips MT7621/MT76x8, 24Kc/1004Kc)",
		GOARCH:      "mipsle", GOMIPS: "softfloat",
		PackageArch: "mipsel_24kc", Tags: []string{Router}, QEMUUser: "qemu-mipsel-static",
	},
	{
		Name:        "openwrt-mips",
		Description: "MIPS big-endian (ath79 Atheros/Qualcomm, 24Kc/74Kc)",
		GOARCH:      "mips", GOMIPS: "softfloat",
		PackageArch: "mips_24kc", Tags: []string{Router}, QEMUUser: "qemu-mips-static",
	},
	{
		Name:        "openwrt-armv7",
		Description: "32-bit ARMv7 (ipq40xx Cortex-A7; others with --arch)",
		GOARCH:      "arm", GOARM: "7",
		PackageArch: "arm_cortex-a7_neon-vfpv4", Tags: []string{Router}, QEMUUser: "qemu-arm-static",
	},
	{
		Name:        "openwrt-aarch64",
		Description: "64-bit ARM (mediatek filogic/mt7622, ipq807x, bcm27xx: Cortex-A53)",
		GOARCH:      "arm64",
		PackageArch: "aarch64_cortex-a53", Tags: []string{Router}, QEMUUser: "qemu-aarch64-static",
	},
	{
		Name:           "rpi",
		Description:    "Raspberry Pi 3B/3B+/4B/400/CM4/Zero 2 W/5 (one arm64 image for all)",
		GOARCH:         "arm64",
		KernelModule:   "github.com/gokrazy/kernel.rpi",
		FirmwareModule: "github.com/gokrazy/firmware",
		KernelFiles:    []string{"vmlinuz", "*.dtb", "overlays/*.dtbo", "overlays/overlay_map.dtb"},
		FirmwareFiles:  []string{"*.bin", "*.dat", "*.elf"},
		Console:        "console=tty1 console=serial0,115200",
		RootDevice:     "/dev/mmcblk0p",
		HybridMBR:      true,
		ConfigTxt:      true,
	},
	{
		Name:         "arm64",
		Description:  "generic arm64 machines and VMs (UEFI or direct kernel boot; qemu -M virt)",
		GOARCH:       "arm64",
		KernelModule: "github.com/gokrazy/kernel.arm64",
		KernelFiles:  []string{"vmlinuz"},
		Console:      "console=tty1 console=ttyAMA0,115200",
		RootDevice:   "/dev/nvme0n1p",
		QEMU:         "qemu-system-aarch64",
	},
	{
		Name:         "amd64",
		Description:  "PCs and VMs with x86-64 CPUs (UEFI or direct kernel boot; qemu)",
		GOARCH:       "amd64",
		KernelModule: "github.com/gokrazy/kernel.amd64",
		KernelFiles:  []string{"vmlinuz"},
		Console:      "console=tty1 console=ttyS0,115200",
		RootDevice:   "/dev/nvme0n1p",
		QEMU:         "qemu-system-x86_64",
		// systemd-boot from Debian's systemd-boot-efi package.
		UEFIBootManager: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
		UEFIBootName:    "BOOTX64.EFI",
	},
}

// IsRouter reports whether b is a router board: built as a package for the
// router's own firmware, not as an image.
func (b Board) IsRouter() bool { return b.PackageArch != "" }

// Kind is "image" or "package (ARCH)" for `cloudbox boards`.
func (b Board) Kind() string {
	if b.IsRouter() {
		return "package (" + b.PackageArch + ")"
	}
	return "image"
}

// GoEnv is the environment, added to the build host's, that cross-compiles
// static binaries for b.
func (b Board) GoEnv() []string {
	env := []string{"GOOS=linux", "GOARCH=" + b.GOARCH, "CGO_ENABLED=0"}
	if b.GOARM != "" {
		env = append(env, "GOARM="+b.GOARM)
	}
	if b.GOMIPS != "" {
		env = append(env, "GOMIPS="+b.GOMIPS)
	}
	return env
}

// All returns every board, sorted by name.
func All() []Board {
	out := append([]Board(nil), all...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the board called name.
func Lookup(name string) (Board, error) {
	for _, b := range all {
		if b.Name == name {
			return b, nil
		}
	}
	return Board{}, fmt.Errorf("unknown board %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Names returns the names of all boards, sorted.
func Names() []string {
	var names []string
	for _, b := range All() {
		names = append(names, b.Name)
	}
	return names
}

// ForGOARCH returns the generic (VM-capable) board for a Go architecture, used
// by `make run` to pick the host's board.
func ForGOARCH(goarch string) (Board, error) {
	for _, b := range all {
		if b.GOARCH == goarch && b.QEMU != "" {
			return b, nil
		}
	}
	return Board{}, fmt.Errorf("no VM-capable board for GOARCH %q", goarch)
}
