package vm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/image/internal/fat"
	"github.com/cloudbox/cloudbox/image/internal/gpt"
)

// writeBootImage writes a disk with a minimal GPT (four partitions, the
// first a FAT file system holding files) to path.
func writeBootImage(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const bootStart, bootSectors = 2048, 32 << 20 / gpt.SectorSize
	hdr := make([]byte, gpt.SectorSize)
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint64(hdr[72:], 2)
	binary.LittleEndian.PutUint32(hdr[80:], 4)
	binary.LittleEndian.PutUint32(hdr[84:], 128)
	entries := make([]byte, 4*128)
	for i := range 4 {
		e := entries[i*128:]
		typ := gpt.GUID(gpt.TypeLinuxData)
		copy(e, typ[:])
		first := uint64(bootStart + i*bootSectors)
		binary.LittleEndian.PutUint64(e[32:], first)
		binary.LittleEndian.PutUint64(e[40:], first+bootSectors-1)
	}
	if _, err := f.WriteAt(hdr, gpt.SectorSize); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(entries, 2*gpt.SectorSize); err != nil {
		t.Fatal(err)
	}
	var fs []fat.File
	for p, c := range files {
		fs = append(fs, fat.File{Path: p, Data: []byte(c)})
	}
	if err := fat.Write(f, bootStart*gpt.SectorSize, bootSectors*gpt.SectorSize, fs, fat.Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestFirmware checks the emulated Pi firmware: config.txt's slot, the
// tryboot flag honoured once per new content, the trial command line, and
// the commit check of the watchdog.
func TestFirmware(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	files := map[string]string{
		"config.txt":          "[all]\nos_prefix=a/\n",
		"tryboot.txt":         "[all]\nos_prefix=b/\ncmdline=cmdline-trial.txt\n",
		"a/vmlinuz":           "kernel A",
		"a/cmdline.txt":       "root=PARTUUID=x/PARTNROFF=1   ",
		"b/vmlinuz":           "kernel B",
		"b/cmdline.txt":       "root=PARTUUID=x/PARTNROFF=2",
		"b/cmdline-trial.txt": "root=PARTUUID=x/PARTNROFF=2 cloudbox.trial=60",
	}
	writeBootImage(t, img, files)
	fw := firmware{image: img}
	check := func(wantPrefix, wantKernel string, wantTrial bool) {
		t.Helper()
		m, err := fw.next(Machine{})
		if err != nil {
			t.Fatal(err)
		}
		if m.Prefix != wantPrefix || string(m.Kernel) != wantKernel || m.Trial != wantTrial {
			t.Fatalf("boots prefix %q kernel %q trial %v, want %q %q %v", m.Prefix, m.Kernel, m.Trial, wantPrefix, wantKernel, wantTrial)
		}
		if m.Trial != strings.Contains(m.Cmdline, "cloudbox.trial=60") {
			t.Fatalf("command line %q for a trial %v", m.Cmdline, m.Trial)
		}
	}
	check("a/", "kernel A", false)
	files["tryboot.flg"] = "2.0.0 1\n"
	writeBootImage(t, img, files)
	check("b/", "kernel B", true)
	check("a/", "kernel A", false) // the flag is consumed
	files["tryboot.flg"] = "2.0.0 2\n"
	writeBootImage(t, img, files)
	check("b/", "kernel B", true)
	if !committed(img, "a/") || committed(img, "b/") {
		t.Error("committed: config.txt names a/")
	}
	files["config.txt"] = "os_prefix=b/\n"
	writeBootImage(t, img, files)
	if !committed(img, "b/") {
		t.Error("committed: config.txt names b/ after the commit")
	}
	// An image from before A/B boot boots the files at the root.
	writeBootImage(t, img, map[string]string{"vmlinuz": "old kernel", "cmdline.txt": "root=/dev/sda2"})
	check("", "old kernel", false)
}
