package update

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReadTar feeds release streams (the body of an upload) to the stream
// reader: it must refuse what is not a valid release without storing
// anything it was not given by a verified manifest.
func FuzzReadTar(f *testing.F) {
	k := testKey(1)
	dir := f.TempDir()
	makeRelease(f, dir, release{version: "2.0.0", root: payload("r", 100<<10), chunkSize: 4096 * 4}, k)
	var buf bytes.Buffer
	if err := WriteTar(&buf, dir, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()/3])
	f.Add([]byte{})
	tr := trustOf(1, k)
	f.Fuzz(func(t *testing.T, data []byte) {
		var verified *Manifest
		m, err := readTar(bytes.NewReader(data), func(manifest, sigs []byte) (*Manifest, error) {
			m, err := Verify(tr, manifest, sigs)
			verified = m
			return m, err
		}, func(hash string, data []byte) error {
			if verified == nil {
				t.Fatal("chunk handed over before a manifest was verified")
			}
			ok := false
			for _, c := range verified.UniqueChunks() {
				ok = ok || c.Hash == hash && int64(len(data)) == c.Len
			}
			if !ok {
				t.Fatalf("chunk %.12s (%d bytes) not in the manifest", hash, len(data))
			}
			return nil
		})
		if err == nil && m == nil {
			t.Fatal("no error and no manifest")
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrChunkMismatch) {
			t.Fatalf("error %v wraps no sentinel", err)
		}
	})
}
