//go:build linux && !router

package appliance

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cloudbox/cloudbox/internal/bootslot"
)

// bootMountDir is where cloudboxd mounts the boot partition to install
// updates (/tmp is a tmpfs on a box; the root is read-only).
const bootMountDir = "/tmp/cloudbox-boot"

// openSlotDisk finds the box's disk from the running root device
// (/dev/nvme0n1p2 or /dev/mmcblk0p2), mounts its boot partition read-write
// and returns the slots. ok is false in host mode (no squashfs root).
func openSlotDisk() (d slotDisk, ok bool, err error) {
	dev := runningRootDevice()
	if dev == "" {
		return slotDisk{}, false, nil
	}
	name := filepath.Base(dev)
	active, err := partitionNumber(name)
	if err != nil {
		return slotDisk{}, true, err
	}
	if bootslot.Prefix(active) == "" {
		return slotDisk{}, true, fmt.Errorf("the root file system is on partition %d, not a root slot (2 or 3)", active)
	}
	// /sys/class/block/<part> links to .../<disk>/<part>.
	link, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", name))
	if err != nil {
		return slotDisk{}, true, fmt.Errorf("finding the disk of %s: %w", dev, err)
	}
	disk := filepath.Dir(link)
	ents, err := os.ReadDir(disk)
	if err != nil {
		return slotDisk{}, true, fmt.Errorf("listing partitions of %s: %w", filepath.Base(disk), err)
	}
	parts := map[int]string{}
	for _, e := range ents {
		if n, err := partitionNumber(e.Name()); err == nil {
			parts[n] = "/dev/" + e.Name()
		}
	}
	if parts[1] == "" || parts[bootslot.PartA] == "" || parts[bootslot.PartB] == "" {
		return slotDisk{}, true, fmt.Errorf("disk %s lacks the boot partition or a root slot", filepath.Base(disk))
	}
	if err := mountBoot(parts[1]); err != nil {
		return slotDisk{}, true, err
	}
	return slotDisk{Active: active, BootDir: bootMountDir,
		Roots: map[int]string{bootslot.PartA: parts[bootslot.PartA], bootslot.PartB: parts[bootslot.PartB]}}, true, nil
}

// partitionNumber reads /sys/class/block/<name>/partition.
func partitionNumber(name string) (int, error) {
	data, err := os.ReadFile(filepath.Join("/sys/class/block", name, "partition"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// mountBoot mounts the boot partition dev (vfat) on bootMountDir unless
// something is mounted there already (cloudboxd restarted).
func mountBoot(dev string) error {
	if mounted(bootMountDir) {
		return nil
	}
	if err := os.MkdirAll(bootMountDir, 0o700); err != nil {
		return fmt.Errorf("creating boot mount point: %w", err)
	}
	if err := unix.Mount(dev, bootMountDir, "vfat", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "flush"); err != nil {
		return fmt.Errorf("mounting the boot partition %s: %w", dev, err)
	}
	return nil
}

func mounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// rebootBox syncs the disks and reboots; with tryboot on a Raspberry Pi it
// passes the firmware's "0 tryboot" argument (LINUX_REBOOT_CMD_RESTART2),
// elsewhere the tryboot flag file does (internal/bootslot). why is
// written to the kernel log, so the console shows why the box rebooted.
func rebootBox(tryboot, pi bool, why string) error {
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(f, "cloudboxd: rebooting: %s\n", why)
		f.Close()
	}
	unix.Sync()
	// Leave the boot partition clean (no "not properly unmounted").
	// Best effort: a failure must not keep the box from rebooting.
	_ = unix.Unmount(bootMountDir, 0)
	if tryboot && pi {
		arg, err := unix.BytePtrFromString("0 tryboot")
		if err != nil {
			return err
		}
		_, _, errno := unix.Syscall6(unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2,
			unix.LINUX_REBOOT_CMD_RESTART2, uintptr(unsafe.Pointer(arg)), 0, 0)
		if errno != 0 {
			return fmt.Errorf("reboot with tryboot: %w", errno)
		}
		return nil
	}
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return errors.New("reboot returned")
}

// markTrialCommitted tells init that the trial boot committed.
func markTrialCommitted() error {
	if err := os.WriteFile(bootslot.CommittedMarker, nil, 0o644); err != nil {
		return fmt.Errorf("telling init about the commit: %w", err)
	}
	return nil
}
