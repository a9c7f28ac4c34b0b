// Package vm boots a cloudbox disk image under qemu-system, for development
// (`cloudbox vm`, `make run`) and for the image tests. It uses direct kernel
// boot: the kernel and command line are read from the image's own boot
// partition, so what boots is exactly what was built. The disk is attached as
// NVMe (a device name gokrazy's root-device logic knows), the network is
// qemu's user-mode network on a documentation range, and the panel's port 80
// is forwarded to a port on 127.0.0.1. It does not use KVM: qemu's TCG
// emulation works everywhere, if slowly. It plays the Raspberry Pi
// firmware's A/B boot (config.txt, tryboot.txt, the one-shot tryboot flag,
// a watchdog of trial boots; see Run and internal/bootslot), so updates and
// rollbacks run under qemu as on a Pi.
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudbox/cloudbox/image/internal/fat"
	"github.com/cloudbox/cloudbox/image/internal/gpt"
	"github.com/cloudbox/cloudbox/internal/bootslot"
)

// GPT root partition type GUIDs in on-disk byte order (first three groups
// little-endian), by Go architecture.
var rootTypes = map[string][16]byte{
	"amd64": gpt.GUID(gpt.TypeRootAMD64),
	"arm64": gpt.GUID(gpt.TypeRootARM64),
}

// Config says which image to boot and how. Zero values are documented per
// field.
type Config struct {
	// Image is the disk image file; required. The VM writes to it (/perm).
	Image string
	// HTTPPort is the port on 127.0.0.1 forwarded to the box's port 80;
	// zero means 8080.
	HTTPPort int
	// Memory is the guest RAM in MiB; zero means 1024.
	Memory int
	// CPUs is the number of guest CPUs; zero means 1: under qemu's TCG
	// (no KVM) a guest with two CPUs now and then oopses while its kernel
	// patches its own code (seen as "Fatal exception in interrupt" in
	// flow_hash_from_keys a few seconds into a boot), and panic=10 then
	// reboots it.
	CPUs int
	// Console receives the guest's serial console; nil discards it.
	Console io.Writer
	// Network is the IPv4 network of qemu's user-mode network; zero means
	// 192.0.2.0/24 (a documentation range).
	Network string
	// UEFI boots through the image's own UEFI boot manager with qemu's
	// OVMF firmware, as a PC would, instead of direct kernel boot. amd64
	// only.
	UEFI bool
	// Watchdog bounds a trial boot (see Run): a trial whose config.txt
	// does not name its slot within Watchdog is reset. Zero means
	// DefaultWatchdog.
	Watchdog time.Duration
	// NetNS, if set, is the network namespace (a name under /run/netns)
	// qemu runs in: its user-mode network then reaches that namespace's
	// networks, and HTTPPort listens on that namespace's loopback. It
	// needs ip(8) and root.
	NetNS string
	// OnBoot, if not nil, is called before each boot with what boots.
	OnBoot func(Machine)
	// Logger receives events; nil discards them.
	Logger *slog.Logger
}

// DefaultWatchdog is Config.Watchdog's default.
const DefaultWatchdog = 10 * time.Minute

// OVMF firmware from Debian's ovmf package: code (read-only) and a template
// of the variable store, which each VM gets a private copy of.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Machine describes how an image boots.
type Machine struct {
	GOARCH  string
	QEMU    string // qemu-system binary
	Kernel  []byte
	Cmdline string
	// Prefix is the os_prefix of the slot booted ("a/", "b/"), "" for
	// an image without A/B boot files.
	Prefix string
	// Trial is set when the firmware boots the slot of tryboot.txt.
	Trial bool
}

// readBoot plays the firmware (internal/bootslot): it reads config.txt,
// or tryboot.txt when trial is set, and the kernel and command line of
// the slot it names. Without config.txt the files at the root boot.
func (m *Machine) readBoot(r io.ReaderAt, bootOff int64, configFile string) error {
	m.Trial = configFile == bootslot.TryFile
	if configFile == "" {
		configFile = bootslot.ConfigFile
	}
	var conf bootslot.Config
	data, err := fat.ReadFile(r, bootOff, configFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !m.Trial:
	case err != nil:
		return fmt.Errorf("reading %s from the boot partition: %w", configFile, err)
	default:
		if conf, err = bootslot.ParseConfig(data); err != nil {
			return fmt.Errorf("%s: %w", configFile, err)
		}
	}
	m.Prefix = conf.Prefix
	if m.Kernel, err = fat.ReadFile(r, bootOff, conf.Prefix+bootslot.Kernel); err != nil {
		return fmt.Errorf("reading the kernel %s from the boot partition: %w", conf.Prefix+bootslot.Kernel, err)
	}
	cmdline, err := fat.ReadFile(r, bootOff, conf.CmdlinePath())
	if err != nil {
		return fmt.Errorf("reading %s from the boot partition: %w", conf.CmdlinePath(), err)
	}
	m.Cmdline = strings.TrimSpace(string(cmdline))
	return nil
}

// Inspect reads what is needed to boot the image: its architecture (from the
// type of the root partition) and the kernel and command line from its boot
// partition.
func Inspect(path string) (Machine, error) {
	f, err := os.Open(path)
	if err != nil {
		return Machine{}, fmt.Errorf("opening image: %w", err)
	}
	defer f.Close()
	parts, err := gpt.Read(f)
	if err != nil {
		return Machine{}, fmt.Errorf("reading partition table of %s: %w", path, err)
	}
	if len(parts) < 4 {
		return Machine{}, fmt.Errorf("%s has %d partitions, want the 4 of a cloudbox image", path, len(parts))
	}
	var m Machine
	for arch, t := range rootTypes {
		if parts[1].Type == t {
			m.GOARCH = arch
		}
	}
	if m.GOARCH == "" {
		return Machine{}, fmt.Errorf("%s: root partition type is not amd64 or arm64", path)
	}
	bootOff := parts[0].Offset()
	if _, err := fat.ReadFile(f, bootOff, "bootcode.bin"); err == nil {
		return Machine{}, errors.New("this is a Raspberry Pi image: qemu cannot emulate the Pi's firmware; build the arm64 board for a VM")
	}
	if err := m.readBoot(f, bootOff, ""); err != nil {
		return Machine{}, err
	}
	m.QEMU = map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}[m.GOARCH]
	return m, nil
}

// Args returns the qemu command line for machine m: direct boot of the kernel
// at kernelPath, or, with UEFI, the firmware variable store at varsPath.
func (c Config) Args(m Machine, kernelPath, varsPath string) []string {
	c.setDefaults()
	args := []string{
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-accel", "tcg,thread=multi",
		"-m", strconv.Itoa(c.Memory),
		// A guest reboot ends qemu; Run plays the firmware and boots again.
		"-no-reboot",
		"-smp", strconv.Itoa(c.CPUs),
	}
	if c.UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+qemuEscape(ovmfCode),
			"-drive", "if=pflash,format=raw,file="+qemuEscape(varsPath))
	} else {
		args = append(args, "-kernel", kernelPath, "-append", m.Cmdline)
	}
	args = append(args,
		"-drive", "file="+qemuEscape(c.Image)+",if=none,id=disk0,format=raw,cache=writeback",
		"-device", "nvme,drive=disk0,serial=cloudbox0",
		"-netdev", fmt.Sprintf("user,id=net0,net=%s,hostfwd=tcp:127.0.0.1:%d-:80", c.Network, c.HTTPPort),
		"-device", "virtio-net-pci,netdev=net0",
		"-serial", "stdio",
		"-device", "virtio-rng-pci",
	)
	switch m.GOARCH {
	case "amd64":
		// The gokrazy amd64 kernel needs a CPU newer than qemu64.
		args = append(args, "-machine", "q35", "-cpu", "max")
	case "arm64":
		args = append(args, "-machine", "virt", "-cpu", "cortex-a72")
	}
	return args
}

func (c *Config) setDefaults() {
	if c.HTTPPort == 0 {
		c.HTTPPort = 8080
	}
	if c.Memory == 0 {
		c.Memory = 1024
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.Network == "" {
		c.Network = "192.0.2.0/24"
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Watchdog == 0 {
		c.Watchdog = DefaultWatchdog
	}
}

// Run boots the image and returns when the VM powers off or ctx is done (the
// VM is then stopped). A VM that exits because ctx ended returns nil.
//
// It plays the Raspberry Pi firmware's A/B boot (internal/bootslot): a
// guest reboot ends qemu (-no-reboot) and Run boots again, reading
// config.txt, or tryboot.txt once when the guest set the tryboot flag
// (TryFlagFile with a content not seen before, standing for the Pi's
// `reboot "0 tryboot"` mailbox flag, which the firmware clears). A trial
// boot whose config.txt does not name the trial slot within
// Config.Watchdog is reset, as a hardware watchdog would, and the
// committed slot boots again.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	m, err := Inspect(cfg.Image)
	if err != nil {
		return err
	}
	qemu, err := exec.LookPath(m.QEMU)
	if err != nil {
		return fmt.Errorf("%s not found: install it with `apt-get install qemu-system-x86 qemu-system-arm`", m.QEMU)
	}
	dir, err := os.MkdirTemp("", "cloudbox-vm-")
	if err != nil {
		return fmt.Errorf("creating VM work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if cfg.UEFI {
		if m.GOARCH != "amd64" {
			return fmt.Errorf("UEFI boot is supported for amd64 images only; boot %s images directly", m.GOARCH)
		}
		data, err := os.ReadFile(ovmfVars)
		if err != nil {
			return fmt.Errorf("UEFI firmware not found (install it with `apt-get install ovmf`): %w", err)
		}
		if err := os.WriteFile(vars, data, 0o644); err != nil {
			return fmt.Errorf("copying UEFI variable store: %w", err)
		}
	}
	fw := firmware{image: cfg.Image}
	for {
		boot, err := fw.next(m)
		if err != nil {
			return err
		}
		cfg.Logger.Info("vm booting", "slot", boot.Prefix, "trial", boot.Trial)
		if cfg.OnBoot != nil {
			cfg.OnBoot(boot)
		}
		again, err := runOnce(ctx, cfg, boot, qemu, dir, vars)
		if err != nil || !again {
			return err
		}
	}
}

// firmware is the emulated firmware's memory across reboots: the tryboot
// flag it consumed last.
type firmware struct {
	image    string
	consumed string
}

// next reads the boot partition and returns what boots next.
func (fw *firmware) next(base Machine) (Machine, error) {
	f, err := os.Open(fw.image)
	if err != nil {
		return Machine{}, fmt.Errorf("opening image: %w", err)
	}
	defer f.Close()
	parts, err := gpt.Read(f)
	if err != nil || len(parts) < 4 {
		return Machine{}, fmt.Errorf("reading partition table of %s: %v", fw.image, err)
	}
	m := Machine{GOARCH: base.GOARCH, QEMU: base.QEMU}
	bootOff := parts[0].Offset()
	if flag, err := fat.ReadFile(f, bootOff, bootslot.TryFlagFile); err == nil && len(flag) > 0 && string(flag) != fw.consumed {
		fw.consumed = string(flag)
		if err := m.readBoot(f, bootOff, bootslot.TryFile); err == nil {
			return m, nil
		}
		// As the Pi firmware does without a usable tryboot.txt.
	}
	if err := m.readBoot(f, bootOff, ""); err != nil {
		return Machine{}, err
	}
	return m, nil
}

// committed reports whether the image's config.txt names prefix.
func committed(image, prefix string) bool {
	f, err := os.Open(image)
	if err != nil {
		return false
	}
	defer f.Close()
	parts, err := gpt.Read(f)
	if err != nil || len(parts) < 4 {
		return false
	}
	data, err := fat.ReadFile(f, parts[0].Offset(), bootslot.ConfigFile)
	if err != nil {
		return false
	}
	c, err := bootslot.ParseConfig(data)
	return err == nil && c.Prefix == prefix
}

// runOnce runs qemu for one boot of m. It reports whether the guest
// rebooted (or the watchdog reset it), so the firmware boots again.
func runOnce(ctx context.Context, cfg Config, m Machine, qemu, dir, vars string) (reboot bool, err error) {
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, m.Kernel, 0o644); err != nil {
		return false, fmt.Errorf("extracting kernel: %w", err)
	}
	console := &powerWatch{w: cfg.Console}
	name, args := qemu, cfg.Args(m, kernel, vars)
	if cfg.NetNS != "" {
		// ip execs qemu in place: the pid, and so the signals, stay qemu's.
		name, args = "ip", append([]string{"netns", "exec", cfg.NetNS, qemu}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout = console
	cmd.Stderr = console
	// qemu gets its own process group so a terminal's Ctrl-C reaches us
	// first and we stop the VM deliberately.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("starting %s: %w", m.QEMU, err)
	}
	cfg.Logger.Info("vm started", "qemu", m.QEMU, "pid", cmd.Process.Pid, "panel", fmt.Sprintf("http://127.0.0.1:%d/", cfg.HTTPPort))
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	stop := func() {
		// SIGTERM makes qemu close the disk cleanly; kill if it lingers.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waitErr:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waitErr
		}
	}
	var watchdog <-chan time.Time
	var poll *time.Ticker
	if m.Trial {
		t := time.NewTimer(cfg.Watchdog)
		defer t.Stop()
		watchdog = t.C
		poll = time.NewTicker(2 * time.Second)
		defer poll.Stop()
	} else {
		poll = time.NewTicker(time.Hour)
		defer poll.Stop()
	}
	for {
		select {
		case err := <-waitErr:
			if err != nil {
				return false, fmt.Errorf("qemu exited: %w", err)
			}
			if console.poweredOff() {
				cfg.Logger.Info("vm powered off")
				return false, nil
			}
			cfg.Logger.Info("vm rebooted")
			return true, nil
		case <-poll.C:
			if watchdog != nil && committed(cfg.Image, m.Prefix) {
				cfg.Logger.Info("vm trial committed", "slot", m.Prefix)
				watchdog = nil
			}
		case <-watchdog:
			cfg.Logger.Warn("vm watchdog reset: the trial boot did not commit", "slot", m.Prefix, "after", cfg.Watchdog)
			_ = cmd.Process.Kill()
			<-waitErr
			return true, nil
		case <-ctx.Done():
			stop()
			cfg.Logger.Info("vm stopped")
			return false, nil
		}
	}
}

// powerMessage is what the kernel prints when it powers the machine off
// (a reboot prints "reboot: Restarting system").
const powerMessage = "reboot: Power down"

// powerWatch passes the console on and notes the kernel's power-off
// message.
type powerWatch struct {
	w    io.Writer
	mu   sync.Mutex
	tail []byte
	off  bool
}

func (p *powerWatch) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.tail = append(p.tail, b...)
	if bytes.Contains(p.tail, []byte(powerMessage)) {
		p.off = true
	}
	if n := len(powerMessage); len(p.tail) > n {
		p.tail = append(p.tail[:0], p.tail[len(p.tail)-n:]...)
	}
	p.mu.Unlock()
	return p.w.Write(b)
}

func (p *powerWatch) poweredOff() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

// qemuEscape escapes a value inside a qemu option list, where a comma
// separates options and a doubled comma stands for itself.
func qemuEscape(v string) string { return strings.ReplaceAll(v, ",", ",,") }
