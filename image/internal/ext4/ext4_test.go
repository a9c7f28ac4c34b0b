package ext4

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is an io.WriterAt that keeps every write.
type recorder struct {
	mu     sync.Mutex
	writes []write
}

type write struct {
	off  int64
	data []byte
}

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, write{off, bytes.Clone(p)})
	return len(p), nil
}

// sum hashes the image the writes make of a zeroed region.
func (r *recorder) sum() [32]byte {
	h := sha256.New()
	for _, w := range r.writes {
		binary.Write(h, binary.LittleEndian, w.off)
		h.Write(w.data)
	}
	return [32]byte(h.Sum(nil))
}

var testTime = time.Date(2025, 3, 1, 12, 30, 15, 0, time.UTC)

func TestFormatWrites(t *testing.T) {
	for _, tc := range []struct {
		name     string
		off      int64
		size     int64
		maxBytes int // budget of bytes written
	}{
		{"8MiB", 0, 8 << 20, 64 << 10},
		{"140MiB/partial-group", 0, 140 << 20, 64 << 10},
		{"4GiB", 0, 4 << 30, 512 << 10},
		{"4GiB/offset", 1104 << 20, 4 << 30, 512 << 10},
		{"5GiB/unaligned", 4097, 5<<30 + 4095, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			if err := Format(&r, tc.off, tc.size, Options{Label: "perm", Time: testTime}); err != nil {
				t.Fatalf("Format: %v", err)
			}
			total := 0
			end := int64(-1)
			for _, w := range r.writes {
				if w.off < tc.off || w.off+int64(len(w.data)) > tc.off+tc.size {
					t.Errorf("write of %d bytes at %d is outside [%d, %d)", len(w.data), w.off, tc.off, tc.off+tc.size)
				}
				if w.off < end {
					t.Errorf("write at %d overlaps or precedes the previous one ending at %d", w.off, end)
				}
				end = w.off + int64(len(w.data))
				if !bytes.ContainsFunc(w.data, func(r rune) bool { return r != 0 }) {
					t.Errorf("write of %d zero bytes at %d: the region is zero already", len(w.data), w.off)
				}
				total += len(w.data)
			}
			if total > tc.maxBytes {
				t.Errorf("Format wrote %d bytes in %d writes, want at most %d", total, len(r.writes), tc.maxBytes)
			}
			t.Logf("%d bytes in %d writes", total, len(r.writes))
		})
	}
}

func TestFormatErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int64
		size int64
		opts Options
		want error
	}{
		{"zero size", 0, 0, Options{}, ErrTooSmall},
		{"below minimum", 0, MinSize - 1, Options{}, ErrTooSmall},
		{"negative offset", -4096, 100 << 20, Options{}, ErrInvalid},
		{"above maximum", 0, MaxSize + blockSize, Options{}, ErrTooLarge},
		{"offset overflows", math.MaxInt64 - 1<<20, 100 << 20, Options{}, ErrTooLarge},
		{"label too long", 0, 100 << 20, Options{Label: "seventeen-bytes!!"}, ErrInvalid},
		{"time before 1970", 0, 100 << 20, Options{Time: time.Unix(-1, 0)}, ErrInvalid},
		{"time after 2446", 0, 100 << 20, Options{Time: time.Date(2447, 1, 1, 0, 0, 0, 0, time.UTC)}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			err := Format(&r, tc.off, tc.size, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Format(off=%d, size=%d) = %v, want %v", tc.off, tc.size, err, tc.want)
			}
			if len(r.writes) != 0 {
				t.Errorf("Format wrote %d times before failing", len(r.writes))
			}
		})
	}
	t.Run("write error", func(t *testing.T) {
		err := Format(failWriter{}, 0, MinSize, Options{})
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("Format = %v, want %v", err, errDiskFull)
		}
	})
}

var errDiskFull = errors.New("disk full")

type failWriter struct{}

func (failWriter) WriteAt([]byte, int64) (int, error) { return 0, errDiskFull }

func TestFormatDeterministic(t *testing.T) {
	const size = 1 << 30
	base := Options{Label: "perm", Time: testTime}
	sum := func(t *testing.T, off int64, o Options) [32]byte {
		t.Helper()
		var r recorder
		if err := Format(&r, off, size, o); err != nil {
			t.Fatalf("Format: %v", err)
		}
		return r.sum()
	}
	want := sum(t, 0, base)
	if got := sum(t, 0, base); got != want {
		t.Fatalf("two Formats of the same inputs differ: %x != %x", got, want)
	}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"label", Options{Label: "perm2", Time: testTime}},
		{"uuid", Options{Label: "perm", Time: testTime, UUID: [16]byte{1}}},
		{"hash seed", Options{Label: "perm", Time: testTime, HashSeed: [16]byte{1}}},
		{"time", Options{Label: "perm", Time: testTime.Add(time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sum(t, 0, tc.o); got == want {
				t.Errorf("changing the %s does not change the bytes", tc.name)
			}
		})
	}

	// The same through real files: the whole image, holes included.
	fileSum := func(t *testing.T) [32]byte {
		f, err := os.Create(filepath.Join(t.TempDir(), "perm.img"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(100 << 20); err != nil {
			t.Fatal(err)
		}
		if err := Format(f, 0, 100<<20, base); err != nil {
			t.Fatalf("Format: %v", err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	if a, b := fileSum(t), fileSum(t); a != b {
		t.Errorf("two 100 MiB images differ: sha256 %x != %x", a, b)
	}
}

func TestDerivedIDs(t *testing.T) {
	var r recorder
	if err := Format(&r, 0, 100<<20, Options{}); err != nil {
		t.Fatalf("Format: %v", err)
	}
	sb := r.writes[0].data // primary superblock, written first at byte 1024
	if r.writes[0].off != 1024 || binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		t.Fatalf("first write is not the superblock at 1024 (off %d)", r.writes[0].off)
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{"uuid", sb[0x68:0x78]}, {"hash seed", sb[0xec:0xfc]}} {
		if bytes.Equal(f.b, make([]byte, 16)) {
			t.Errorf("zero Options gave a zero %s", f.name)
		}
	}
	if got := binary.LittleEndian.Uint32(sb[0x108:]); got != 0 {
		t.Errorf("zero Options gave s_mkfs_time %d, want 0 (Unix epoch)", got)
	}
	if label := strings.TrimRight(string(sb[0x78:0x88]), "\x00"); label != "" {
		t.Errorf("zero Options gave label %q", label)
	}
}

func TestFormatTime(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "perm.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if err := Format(f, 0, 4<<30, Options{Label: "perm"}); err != nil {
		t.Fatalf("Format: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("formatting 4 GiB took %v, want well under a second", d)
	} else {
		t.Logf("formatting 4 GiB took %v", d)
	}
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		blocks uint32
		want   layout
		last   uint32 // blocks in the last group
	}{
		{"minimum", MinSize / blockSize, layout{blocks: 2048, groups: 1, ipg: 512, itb: 32, gdtBlocks: 1, journal: 1024}, 2048},
		{"tiny last group dropped", 33027, layout{blocks: 32768, groups: 1, ipg: 8192, itb: 512, gdtBlocks: 1, journal: 4096}, 32768},
		{"partial last group kept", 35840, layout{blocks: 35840, groups: 2, ipg: 4480, itb: 280, gdtBlocks: 1, journal: 4096}, 3072},
		{"maximum", math.MaxUint32, layout{blocks: math.MaxUint32, groups: 131072, ipg: 8192, itb: 512, gdtBlocks: 1024, journal: 16384}, 32767},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := newLayout(tc.blocks)
			if got != tc.want {
				t.Errorf("newLayout(%d) = %+v, want %+v", tc.blocks, got, tc.want)
			}
			if last := got.groupBlocks(got.groups - 1); last != tc.last {
				t.Errorf("last group has %d blocks, want %d", last, tc.last)
			}
			if n := uint64(got.ipg) * uint64(got.groups); n > math.MaxUint32 {
				t.Errorf("%d inodes overflow s_inodes_count", n)
			}
		})
	}
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

func BenchmarkFormat4GiB(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := Format(discard{}, 0, 4<<30, Options{Label: "perm"}); err != nil {
			b.Fatal(err)
		}
	}
}
