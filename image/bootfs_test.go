package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/fat"
)

// slotHeadroom is the room the boot partition must keep beyond two slots of
// today's kernel files, so that kernels can grow for a while.
const slotHeadroom = 32 * boards.MiB

// TestBootPartitionHoldsTwoSlots writes, for every image board, the boot
// files of a fresh image plus a second slot's copy of its kernel files
// (what an update writes) and a slotHeadroom file into a boot partition of
// boards.BootSize, with the real kernel and firmware modules.
func TestBootPartitionHoldsTwoSlots(t *testing.T) {
	for _, b := range boards.All() {
		if b.IsRouter() {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			cfg := Config{Board: b, Out: filepath.Join(t.TempDir(), "unused.img")}
			ctx := context.Background()
			if err := cfg.setDefaults(ctx); err != nil {
				t.Fatal(err)
			}
			kernelDir, err := moduleDir(ctx, &cfg, b.KernelModule)
			if err != nil {
				t.Fatal(err)
			}
			var firmwareDir string
			if b.FirmwareModule != "" {
				if firmwareDir, err = moduleDir(ctx, &cfg, b.FirmwareModule); err != nil {
					t.Fatal(err)
				}
			}
			l, err := newLayout(b, DefaultSize, "cbtest")
			if err != nil {
				t.Fatal(err)
			}
			files, err := bootFiles(b, l, kernelDir, firmwareDir)
			if err != nil {
				t.Fatal(err)
			}
			var slot, total int
			for _, f := range files {
				total += len(f.Data)
				if rest, ok := strings.CutPrefix(f.Path, "a/"); ok {
					files = append(files, fat.File{Path: "b/" + rest, Data: f.Data})
					slot += len(f.Data)
					total += len(f.Data)
				}
			}
			if slot == 0 {
				t.Fatal("the image has no kernel files under a/")
			}
			files = append(files, fat.File{Path: "headroom", Data: make([]byte, slotHeadroom)})
			disk, err := os.Create(filepath.Join(t.TempDir(), "boot.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer disk.Close()
			if err := disk.Truncate(boards.BootSize); err != nil {
				t.Fatal(err)
			}
			if err := fat.Write(disk, 0, boards.BootSize, files, fat.Options{}); err != nil {
				t.Fatalf("two slots (%d MiB each, %d MiB in all) and %d MiB of headroom do not fit the %d MiB boot partition: %v",
					slot>>20, total>>20, slotHeadroom>>20, boards.BootSize>>20, err)
			}
			t.Logf("%s: a slot holds %.1f MiB; two slots and the shared files %.1f MiB of %d MiB",
				b.Name, float64(slot)/boards.MiB, float64(total)/boards.MiB, boards.BootSize>>20)
		})
	}
}
