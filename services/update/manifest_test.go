package update

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// validManifest returns the bytes of a small valid manifest.
func validManifest(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	makeRelease(t, dir, release{version: "1.0.0", root: payload("root", 150<<10), boot: payload("k", 10)})
	data, _, err := ReadReleaseDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseManifest(t *testing.T) {
	good := validManifest(t)
	if _, err := ParseManifest(good); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
	// edit returns good with one JSON change applied.
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	art := func(m map[string]any) map[string]any { return m["artifacts"].([]any)[0].(map[string]any) }
	tests := []struct {
		name, wantField string
		data            []byte
	}{
		{"unknown field", "unknown field", edit(func(m map[string]any) { m["evil"] = 1 })},
		{"format", "format", edit(func(m map[string]any) { m["format"] = 2 })},
		{"board", "board", edit(func(m map[string]any) { m["board"] = "Amd64!" })},
		{"channel", "channel", edit(func(m map[string]any) { m["channel"] = "" })},
		{"dev version", "version", edit(func(m map[string]any) { m["version"] = "dev" })},
		{"bad min", "min_version", edit(func(m map[string]any) { m["min_version"] = "x" })},
		{"spread", "rollout_spread_s", edit(func(m map[string]any) { m["rollout_spread_s"] = -1 })},
		{"chunk size", "chunk_size", edit(func(m map[string]any) { m["chunk_size"] = 1 })},
		{"no artifacts", "artifacts", edit(func(m map[string]any) { m["artifacts"] = []any{} })},
		{"chunk count", "chunks", edit(func(m map[string]any) { art(m)["size"] = 1 << 20 })},
		{"bad hash", "sha256", edit(func(m map[string]any) { art(m)["sha256"] = "00" })},
		{"upper hash", "chunks[0]", edit(func(m map[string]any) {
			art(m)["chunks"].([]any)[0] = strings.ToUpper(art(m)["chunks"].([]any)[0].(string))
		})},
		{"no root", "no \"root\"", edit(func(m map[string]any) { art(m)["name"] = "boot/x" })},
		{"router with boot files", "alone", edit(func(m map[string]any) { art(m)["name"] = DaemonArtifact })},
		{"traversal", "name", edit(func(m map[string]any) { m["artifacts"].([]any)[1].(map[string]any)["name"] = "boot/../etc" })},
		{"duplicate", "twice", edit(func(m map[string]any) {
			m["artifacts"] = append(m["artifacts"].([]any), m["artifacts"].([]any)[1])
		})},
		{"trailing", "after", append(append([]byte{}, good...), []byte(" {}")...)},
		{"not json", "decoding", []byte("<xml/>")},
	}
	router := edit(func(m map[string]any) {
		m["artifacts"] = m["artifacts"].([]any)[:1]
		art(m)["name"] = DaemonArtifact
	})
	if m, err := ParseManifest(router); err != nil || m.Artifacts[0].Name != DaemonArtifact {
		t.Errorf("a router's manifest (cloudboxd alone): %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest(tt.data)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseManifest: got %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("error %q does not name %q", err, tt.wantField)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(validManifest(f))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"board":"amd64","version":"1","channel":"stable","chunk_size":4096,"artifacts":[{"name":"root","size":0,"sha256":"` + strings.Repeat("0", 64) + `","chunks":[]}]}`))
	f.Add([]byte(`{"format":1,"board":"openwrt-mipsle","version":"1","channel":"stable","chunk_size":4096,"artifacts":[{"name":"cloudboxd","size":0,"sha256":"` + strings.Repeat("0", 64) + `","chunks":[]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// A parsed manifest is consistent: every chunk has a length.
		for _, a := range m.Artifacts {
			for i := range a.Chunks {
				if n := m.ChunkLen(a, i); n <= 0 || n > m.ChunkSize {
					t.Fatalf("chunk %d of %s has length %d", i, a.Name, n)
				}
			}
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
	})
}
