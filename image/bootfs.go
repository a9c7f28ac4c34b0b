package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/fat"
	"github.com/cloudbox/cloudbox/internal/bootslot"
)

// cmdlinePadding is appended to cmdline.txt: gokrazy's update code rewrites
// root= in place and cannot grow the file (shared/docs/gokrazy-image.md §3.1).
const cmdlinePadding = 64

// Cmdline returns the kernel command line of board b booting root slot from
// an image with layout l, built from the kernel module's cmdline.txt.
func kernelCmdline(b boards.Board, l layout, moduleCmdline string, slot int) string {
	args := []string{}
	for _, a := range strings.Fields(b.Console) {
		args = append(args, a)
	}
	hasRootwait := false
	for _, a := range strings.Fields(moduleCmdline) {
		switch {
		case strings.HasPrefix(a, "root="):
			a = l.RootCmdline(slot)
		case strings.HasPrefix(a, "rootdelay="):
			// rootwait below waits for the PARTUUID as long as needed,
			// without the fixed delay.
			continue
		case a == "rootwait":
			hasRootwait = true
		}
		args = append(args, a)
	}
	if !hasRootwait {
		args = append(args, "rootwait")
	}
	return strings.Join(args, " ")
}

// bootFiles collects the files of the boot partition: kernel, device trees
// and firmware from their modules, and the generated cmdline.txt and
// config.txt.
func bootFiles(b boards.Board, l layout, kernelDir, firmwareDir string) ([]fat.File, error) {
	var files []fat.File
	add := func(dir string, patterns []string) error {
		for _, pat := range patterns {
			matches, err := filepath.Glob(filepath.Join(dir, pat))
			if err != nil {
				return fmt.Errorf("bad pattern %q: %w", pat, err)
			}
			sort.Strings(matches)
			for _, m := range matches {
				data, err := os.ReadFile(m)
				if err != nil {
					return fmt.Errorf("reading boot file: %w", err)
				}
				rel, _ := filepath.Rel(dir, m)
				files = append(files, fat.File{Path: filepath.ToSlash(rel), Data: data})
			}
		}
		return nil
	}
	if err := add(kernelDir, b.KernelFiles); err != nil {
		return nil, err
	}
	if firmwareDir != "" {
		if err := add(firmwareDir, b.FirmwareFiles); err != nil {
			return nil, err
		}
	}
	if !hasFile(files, "vmlinuz") {
		return nil, fmt.Errorf("kernel module %s has no vmlinuz", b.KernelModule)
	}
	moduleCmdline, err := os.ReadFile(filepath.Join(kernelDir, "cmdline.txt"))
	if err != nil {
		return nil, fmt.Errorf("reading kernel command line: %w", err)
	}
	cmdline := kernelCmdline(b, l, string(moduleCmdline), partRootA) + strings.Repeat(" ", cmdlinePadding)
	files = append(files, fat.File{Path: "cmdline.txt", Data: []byte(cmdline)})
	if b.UEFIBootManager != "" {
		efi, err := os.ReadFile(b.UEFIBootManager)
		if err != nil {
			return nil, fmt.Errorf("reading the UEFI boot manager (install it with `apt-get install systemd-boot-efi`): %w", err)
		}
		// systemd-boot's configuration; gokrazy's update code rewrites
		// root= in loader/entries/gokrazy.conf as it does in cmdline.txt,
		// so the entry carries the same padded command line.
		files = append(files,
			fat.File{Path: "EFI/BOOT/" + b.UEFIBootName, Data: efi},
			fat.File{Path: "loader/loader.conf", Data: []byte("default gokrazy.conf\ntimeout 0\n")},
			fat.File{Path: "loader/entries/gokrazy.conf", Data: []byte("title cloudbox\nlinux /vmlinuz\noptions " + cmdline + "\n")},
		)
	}
	var config []byte
	if b.ConfigTxt {
		cfg, err := os.ReadFile(filepath.Join(kernelDir, "config.txt"))
		if err != nil {
			return nil, fmt.Errorf("reading config.txt: %w", err)
		}
		// The serial console needs the UART enabled.
		config = []byte(strings.ReplaceAll(string(cfg), "enable_uart=0", "enable_uart=1"))
	}
	// A/B boot files (internal/bootslot): slot A's kernel files and
	// command line under a/, config.txt selecting it.
	// Only the UEFI boot entry (loader/entries) needs a kernel at the
	// root; elsewhere the kernel files are moved, as the partition holds
	// big kernels (arm64, rpi) only once.
	prefix := bootslot.Prefix(partRootA)
	var out []fat.File
	for _, f := range files {
		if !slotFile(b, f.Path) && f.Path != "cmdline.txt" {
			out = append(out, f)
			continue
		}
		if b.UEFIBootManager != "" {
			out = append(out, f)
		}
		out = append(out, fat.File{Path: prefix + f.Path, Data: f.Data})
	}
	files = out
	files = append(files, fat.File{Path: "config.txt", Data: bootslot.SetPrefix(config, prefix)})
	return files, nil
}

// slotFile reports whether the boot file at path belongs to a slot (the
// kernel module's files) rather than to the firmware.
func slotFile(b boards.Board, path string) bool {
	for _, pat := range b.KernelFiles {
		if ok, _ := filepath.Match(pat, path); ok {
			return true
		}
	}
	return false
}

func hasFile(files []fat.File, path string) bool {
	for _, f := range files {
		if f.Path == path {
			return true
		}
	}
	return false
}
