package gpt

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// table builds a minimal disk with a primary GPT holding parts.
func table(parts []Partition) []byte {
	disk := make([]byte, 64*SectorSize)
	h := disk[SectorSize:]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	for i, p := range parts {
		e := disk[2*SectorSize+i*128:]
		copy(e, p.Type[:])
		copy(e[16:], p.UUID[:])
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
	}
	return disk
}

func TestGUID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
	}{
		{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}},
		{"not a guid", make([]byte, 16)},
		{"c12a7328-f81f-11d2-ba4b", make([]byte, 16)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := GUID(tc.in)
			if !bytes.Equal(got[:], tc.want) {
				t.Errorf("GUID(%q) = %x, want %x", tc.in, got, tc.want)
			}
		})
	}
}

func TestRead(t *testing.T) {
	want := []Partition{
		{Type: GUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), UUID: GUID("c1b0c1b0-0000-4000-8000-000000000001"), FirstLBA: 8192, LastLBA: 212991},
		{Type: GUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"), UUID: GUID("c1b0c1b0-0000-4000-8000-000000000002"), FirstLBA: 212992, LastLBA: 1236991},
	}
	got, err := Read(bytes.NewReader(table(want)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Read returned %d partitions, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("partition %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}

	bad := table(want)
	binary.LittleEndian.PutUint64(bad[2*SectorSize+40:], 1) // last < first
	if _, err := Read(bytes.NewReader(bad)); err == nil {
		t.Error("Read accepted an entry that ends before it starts")
	}
	if _, err := Read(bytes.NewReader(make([]byte, 4096))); err == nil {
		t.Error("Read accepted a disk without a GPT")
	}
}

func FuzzRead(f *testing.F) {
	f.Add(table([]Partition{{Type: GUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), FirstLBA: 34, LastLBA: 40}})[:4096])
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, p := range parts {
			if p.LastLBA < p.FirstLBA {
				t.Fatalf("Read returned a partition with bad bounds: %+v", p)
			}
		}
		if len(parts) > maxEntries {
			t.Fatalf("Read returned %d partitions, more than %d", len(parts), maxEntries)
		}
	})
}
