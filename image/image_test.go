package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/gpt"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

const testSize = 1400 << 20

// built caches one image per board for the structure tests: building is the
// expensive part, checking is cheap.
var built struct {
	sync.Mutex
	dir    string
	images map[string]Result
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cloudbox-image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir = dir
	built.images = map[string]Result{}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testConfig(t *testing.T, board, out string) Config {
	t.Helper()
	b, err := boards.Lookup(board)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Board: b, Out: out, Size: testSize, Hostname: "cbtest", Version: "v0.0.0-test",
		SourceDateEpoch: 1700000000, SourceDir: testenv.ModuleRoot(t),
	}
}

// image returns the cached image of board, building it on first use.
func image(t *testing.T, board string) Result {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if r, ok := built.images[board]; ok {
		return r
	}
	r, err := Build(context.Background(), testConfig(t, board, filepath.Join(built.dir, board+".img")))
	if err != nil {
		t.Fatalf("building %s image: %v", board, err)
	}
	built.images[board] = r
	return r
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"2G", 2 << 30, false},
		{"2GiB", 2 << 30, false},
		{"1500M", 1500 << 20, false},
		{"1500mb", 1500 << 20, false},
		{"4096", 4096, false},
		{"", 0, true},
		{"-1G", 0, true},
		{"2X", 0, true},
		{"99999999999T", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("ParseSize(%q) error = %v, want error %v", tc.in, err, tc.err)
			}
			if got != tc.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// TestLayout checks the partition offsets against gokrazy's layout
// (shared/docs/gokrazy-image.md §2.1), with a 256 MiB boot partition
// instead of 100 MiB (two slots of kernel files).
func TestLayout(t *testing.T) {
	b, _ := boards.Lookup("rpi")
	l, err := newLayout(b, 2<<30, "cloudbox")
	if err != nil {
		t.Fatal(err)
	}
	n := int64(2<<30) / 512
	want := [4][2]int64{{8192, 524288}, {532480, 1024000}, {1556480, 1024000}, {2580480, n - 34 - 2580480 + 1}}
	for i, p := range l.Parts {
		if got := [2]int64{p.Start, p.Sectors}; got != want[i] {
			t.Errorf("partition %d: start, sectors = %v, want %v", i+1, got, want[i])
		}
	}
	if _, err := newLayout(b, boards.MinImageSize-boards.MiB, "x"); err == nil {
		t.Error("newLayout accepted a size below the minimum")
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"no board", func(c *Config) { c.Board = boards.Board{} }, "no board"},
		{"too small", func(c *Config) { c.Size = 1 << 30 }, "too small"},
		{"unwritable output", func(c *Config) { c.Out = filepath.Join(notDir, "x.img") }, "cannot write image"},
		{"bad hostname", func(c *Config) { c.Hostname = "Bad_Name" }, "invalid hostname"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "amd64", filepath.Join(dir, "out.img"))
			tc.mutate(&cfg)
			_, err := Build(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build error = %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "file" {
					t.Errorf("Build left %s behind", e.Name())
				}
			}
		})
	}
}

type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		Sectorsize int    `json:"sectorsize"`
		Partitions []struct {
			Node  string `json:"node"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extract copies a partition out of the image into its own sparse file, for
// tools that cannot take an offset.
func extract(t *testing.T, img string, p partition) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), fmt.Sprintf("p%d.img", p.Num))
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(p.Size()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < p.Size(); off += int64(len(buf)) {
		n, err := in.ReadAt(buf, p.Offset()+off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

func TestImageStructure(t *testing.T) {
	sfdisk := testenv.RequireCommand(t, "sfdisk", "fdisk")
	fsck := testenv.RequireCommand(t, "fsck.vfat", "dosfstools")
	mdir := testenv.RequireCommand(t, "mdir", "mtools")
	mtype := testenv.RequireCommand(t, "mtype", "mtools")
	unsquashfs := testenv.RequireCommand(t, "unsquashfs", "squashfs-tools")
	e2fsck := testenv.RequireCommand(t, "e2fsck", "e2fsprogs")

	for _, board := range []string{"rpi", "amd64"} {
		t.Run(board, func(t *testing.T) {
			res := image(t, board)
			b, _ := boards.Lookup(board)
			l, _ := newLayout(b, testSize, "cbtest")

			var table sfdiskTable
			if err := json.Unmarshal([]byte(run(t, sfdisk, "--json", res.Path)), &table); err != nil {
				t.Fatalf("parsing sfdisk --json: %v", err)
			}
			pt := table.PartitionTable
			if pt.Label != "gpt" || len(pt.Partitions) != 4 {
				t.Fatalf("sfdisk: label %q with %d partitions, want gpt with 4", pt.Label, len(pt.Partitions))
			}
			for i, p := range pt.Partitions {
				want := l.Parts[i]
				if p.Start != want.Start || p.Size != want.Sectors || !strings.EqualFold(p.UUID, l.PartUUID(i+1)) {
					t.Errorf("partition %d: start %d size %d uuid %s, want %d %d %s", i+1, p.Start, p.Size, p.UUID, want.Start, want.Sectors, l.PartUUID(i+1))
				}
			}
			if !strings.EqualFold(pt.Partitions[0].Type, gpt.TypeEFISystem) {
				t.Errorf("boot partition type %s, want EFI system", pt.Partitions[0].Type)
			}

			// LBA 0: the hybrid MBR on the Pi, a protective MBR elsewhere.
			mbr := make([]byte, 512)
			f, _ := os.Open(res.Path)
			f.ReadAt(mbr, 0)
			f.Close()
			if b.HybridMBR {
				if mbr[446] != 0x80 || mbr[450] != 0x0c || mbr[466] != 0xee {
					t.Errorf("hybrid MBR entries: status %#x type %#x, second type %#x; want 0x80 0x0c, 0xee", mbr[446], mbr[450], mbr[466])
				}
			} else if mbr[450] != 0xee {
				t.Errorf("protective MBR type %#x, want 0xee", mbr[450])
			}

			boot := extract(t, res.Path, l.Parts[0])
			out := run(t, fsck, "-n", boot)
			if strings.Contains(strings.ToLower(out), "differences") || strings.Contains(out, "Free cluster summary wrong") {
				t.Errorf("fsck.vfat -n complains:\n%s", out)
			}
			imgAt := fmt.Sprintf("%s@@%d", res.Path, l.Parts[0].Offset())
			listing := run(t, mdir, "-i", imgAt, "-b", "::/")
			// Slot A's boot files are under a/ (internal/bootslot); a
			// UEFI board keeps them at the root too, for its boot entry.
			slotListing := run(t, mdir, "-i", imgAt, "-b", "::/a/")
			slotDir := "::/a/"
			for _, want := range []string{"vmlinuz", "cmdline.txt"} {
				if !strings.Contains(slotListing, want) {
					t.Errorf("boot partition lacks a/%s:\n%s", want, slotListing)
				}
				if b.UEFIBootManager != "" && !strings.Contains(listing, want) {
					t.Errorf("boot partition lacks %s:\n%s", want, listing)
				}
			}
			cfg := run(t, mtype, "-i", imgAt, "::/config.txt")
			if !strings.Contains(cfg, "os_prefix=a/") {
				t.Errorf("config.txt does not select slot a/:\n%s", cfg)
			}
			if board == "rpi" {
				for _, want := range []string{"config.txt", "bootcode.bin", "start4.elf"} {
					if !strings.Contains(listing, want) {
						t.Errorf("rpi boot partition lacks %s", want)
					}
				}
				for _, want := range []string{"bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "bcm2710-rpi-zero-2-w.dtb", "overlays"} {
					if !strings.Contains(slotListing, want) {
						t.Errorf("rpi boot partition lacks a/%s", want)
					}
				}
				if !strings.Contains(cfg, "enable_uart=1") {
					t.Errorf("config.txt does not enable the UART:\n%s", cfg)
				}
			}
			if b.UEFIBootManager != "" {
				if efi := run(t, mdir, "-i", imgAt, "-b", "::/EFI/BOOT"); !strings.Contains(efi, b.UEFIBootName) {
					t.Errorf("UEFI boot manager missing from /EFI/BOOT:\n%s", efi)
				}
				entry := run(t, mtype, "-i", imgAt, "::/loader/entries/gokrazy.conf")
				if !strings.Contains(entry, "linux /vmlinuz") || !strings.Contains(entry, l.RootCmdline(2)) {
					t.Errorf("loader entry lacks the kernel or root=:\n%s", entry)
				}
			}
			cmdline := run(t, mtype, "-i", imgAt, slotDir+"cmdline.txt")
			for _, want := range []string{l.RootCmdline(2), "init=/gokrazy/init", "rootwait"} {
				if !strings.Contains(cmdline, want) {
					t.Errorf("cmdline.txt %q lacks %q", cmdline, want)
				}
			}
			if !strings.HasSuffix(cmdline, strings.Repeat(" ", cmdlinePadding)) || strings.Contains(cmdline, "\n") {
				t.Errorf("cmdline.txt must end in %d spaces and have no newline: %q", cmdlinePadding, cmdline)
			}

			root := run(t, unsquashfs, "-o", fmt.Sprint(l.Parts[1].Offset()), "-lls", res.Path)
			for _, want := range []string{"squashfs-root/gokrazy/init", "squashfs-root/user/cloudboxd", "squashfs-root/gokrazy/dhcp",
				"squashfs-root/etc/ssl/ca-bundle.pem", "squashfs-root/etc/zoneinfo.zip", "squashfs-root/var -> /perm/var", "squashfs-root/lib/modules/"} {
				if !strings.Contains(root, want) {
					t.Errorf("root squashfs lacks %s", want)
				}
			}
			if strings.Contains(root, "gokr-pw.txt") {
				t.Error("root squashfs has a gokrazy password file: its HTTP API would listen on the network")
			}

			perm := extract(t, res.Path, l.Parts[3])
			run(t, e2fsck, "-fn", perm)
		})
	}
}

func TestReproducible(t *testing.T) {
	first := image(t, "amd64")
	out := filepath.Join(t.TempDir(), "again.img")
	second, err := Build(context.Background(), testConfig(t, "amd64", out))
	if err != nil {
		t.Fatal(err)
	}
	if first.SHA256 != second.SHA256 {
		t.Fatalf("two builds of the same inputs differ: %s vs %s", first.SHA256, second.SHA256)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != second.SHA256 {
		t.Errorf("Result.SHA256 %s does not match the file's %s", second.SHA256, got)
	}
	t.Logf("amd64 image sha256 %s (built twice)", first.SHA256)
}
