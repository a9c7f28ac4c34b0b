package fat

import (
	"fmt"
	"strings"
	"testing"
)

func TestShortNames(t *testing.T) {
	type want struct {
		short string // raw 11 bytes, spaces shown
		long  bool   // long file name entries written
	}
	tests := []struct {
		name  string
		names []string
		want  map[string]want
	}{
		{
			name:  "valid 8.3 names keep them",
			names: []string{"EFI", "BOOTX64.EFI", "cmdline.txt", "Config.Txt", "RECOVERY.000", "a.b"},
			want: map[string]want{
				"EFI":          {"EFI        ", false},
				"BOOTX64.EFI":  {"BOOTX64 EFI", false},
				"cmdline.txt":  {"CMDLINE TXT", true},
				"Config.Txt":   {"CONFIG  TXT", true},
				"RECOVERY.000": {"RECOVERY000", false},
				"a.b":          {"A       B  ", true},
			},
		},
		{
			name:  "names without extension keep their case for gokrazy",
			names: []string{"vmlinuz", "overlays", "Image", "README"},
			want: map[string]want{
				"vmlinuz":  {"vmlinuz    ", true},
				"overlays": {"overlays   ", true},
				"Image":    {"Image      ", true},
				"README":   {"README     ", false},
			},
		},
		{
			name: "generated names",
			names: []string{
				"vc4-kms-v3d.dtbo", "bcm2711-rpi-4-b.dtb", ".hidden", "a.b.c", "with space.txt",
				"plus+sign", "Ünï.txt", "ninechars", "x.toolong", "gokrazy.conf",
			},
			want: map[string]want{
				"vc4-kms-v3d.dtbo":    {"VC4-KM~1DTB", true},
				"bcm2711-rpi-4-b.dtb": {"BCM271~1DTB", true},
				".hidden":             {"HIDDEN~1   ", true},
				"a.b.c":               {"AB~1    C  ", true},
				"with space.txt":      {"WITHSP~1TXT", true},
				"plus+sign":           {"PLUS_S~1   ", true},
				"Ünï.txt":             {"_N_~1   TXT", true},
				"ninechars":           {"NINECH~1   ", true},
				"x.toolong":           {"X~1     TOO", true},
				"gokrazy.conf":        {"GOKRAZ~1CON", true},
			},
		},
		{
			name:  "numeric tails avoid names in use",
			names: []string{"LONGNA~1", "longna~2", "longname1", "longname2", "longname3"},
			want: map[string]want{
				"LONGNA~1":  {"LONGNA~1   ", false},
				"longna~2":  {"longna~2   ", true},
				"longname1": {"LONGNA~3   ", true},
				"longname2": {"LONGNA~4   ", true},
				"longname3": {"LONGNA~5   ", true},
			},
		},
		{
			name: "tails grow into the base",
			names: func() []string {
				var names []string
				for i := range 12 {
					names = append(names, fmt.Sprintf("longname%02d.txt", i))
				}
				return names
			}(),
			want: map[string]want{
				"longname00.txt": {"LONGNA~1TXT", true},
				"longname08.txt": {"LONGNA~9TXT", true},
				"longname09.txt": {"LONGN~10TXT", true},
				"longname11.txt": {"LONGN~12TXT", true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files []File
			for _, n := range tt.names {
				files = append(files, File{Path: n})
			}
			root, err := buildTree(files)
			if err != nil {
				t.Fatal(err)
			}
			seen := make(map[[11]byte]string)
			for _, c := range root.children {
				key := upperShort(c.short)
				if other, ok := seen[key]; ok {
					t.Errorf("%q and %q share the short name %q", other, c.name, c.short)
				}
				seen[key] = c.name
				w, ok := tt.want[c.name]
				if !ok {
					continue
				}
				if got := string(c.short[:]); got != w.short || (c.longName != nil) != w.long {
					t.Errorf("%q: short name %q, long entries %v; want %q, %v",
						c.name, got, c.longName != nil, w.short, w.long)
				}
			}
		})
	}
}

func TestLongEntries(t *testing.T) {
	for _, name := range []string{"a", "exactly13char", "exactly-26-characters.long", strings.Repeat("ü", 255), "emoji-🙂"} {
		t.Run(fmt.Sprintf("%.20s", name), func(t *testing.T) {
			root, err := buildTree([]File{{Path: name}})
			if err != nil {
				t.Fatal(err)
			}
			c := root.children[0]
			b := appendLongEntries(nil, c.longName, c.short)
			b = appendShortEntry(b, c.short, attrArchive, 0, 0, 0, 0)
			if got := len(b) / dirEntrySize; int64(got) != c.entries() {
				t.Errorf("%d entries written, entries() says %d", got, c.entries())
			}
			if _, ok := findEntry(b, name); !ok {
				t.Errorf("findEntry does not find %q by its long name", name)
			}
			if _, ok := findEntry(b, displayShort(c.short)); !ok {
				t.Errorf("findEntry does not find %q by its short name %q", name, c.short)
			}
		})
	}
}
