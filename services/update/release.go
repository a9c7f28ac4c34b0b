package update

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// Input is one artifact to put into a release.
type Input struct {
	Name string // RootArtifact or "boot/<path>", or DaemonArtifact alone
	Data []byte
}

// WriteRelease writes a release directory: the artifacts split into chunks
// of m.ChunkSize (zero means DefaultChunkSize) under dir/chunks, and the
// manifest (m with the artifacts filled in) as dir/manifest.json, unsigned.
// It returns the manifest as written.
func WriteRelease(dir string, m Manifest, inputs []Input) (*Manifest, error) {
	if m.ChunkSize == 0 {
		m.ChunkSize = DefaultChunkSize
	}
	if m.Format == 0 {
		m.Format = FormatVersion
	}
	st, err := OpenStore(dir)
	if err != nil {
		return nil, err
	}
	m.Artifacts = nil
	for _, in := range inputs {
		sum := sha256.Sum256(in.Data)
		a := Artifact{Name: in.Name, Size: int64(len(in.Data)), SHA256: hex.EncodeToString(sum[:]), Chunks: []string{}}
		for off := int64(0); off < a.Size; off += m.ChunkSize {
			piece := in.Data[off:min(off+m.ChunkSize, a.Size)]
			cs := sha256.Sum256(piece)
			h := hex.EncodeToString(cs[:])
			if err := st.PutChunk(h, piece); err != nil {
				return nil, err
			}
			a.Chunks = append(a.Chunks, h)
		}
		m.Artifacts = append(m.Artifacts, a)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, ManifestFile), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	// Releases written here are fresh: remove the store's own release
	// folder, which a release directory does not use.
	os.Remove(filepath.Join(dir, releasesDir))
	return &m, nil
}

// ReadReleaseDir reads the manifest and signature files of a release
// directory; a missing signature file reads as no signatures.
func ReadReleaseDir(dir string) (manifest, signatures []byte, err error) {
	manifest, err = os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, nil, fmt.Errorf("reading release: %w", err)
	}
	signatures, err = os.ReadFile(filepath.Join(dir, SignaturesFile))
	if errors.Is(err, os.ErrNotExist) {
		return manifest, []byte(`{"signatures": []}`), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading release signatures: %w", err)
	}
	return manifest, signatures, nil
}

// SignDir adds key's signature to the release in dir.
func SignDir(dir string, key []byte) (*Manifest, error) {
	k, err := ParsePrivateKey(key)
	if err != nil {
		return nil, err
	}
	manifest, sigData, err := ReadReleaseDir(dir)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	sigs, err := ParseSignatures(sigData)
	if err != nil {
		return nil, err
	}
	sigs = Sign(sigs, k, manifest)
	if err := atomicfile.Write(filepath.Join(dir, SignaturesFile), sigs.Encode(), 0o644); err != nil {
		return nil, fmt.Errorf("writing signatures: %w", err)
	}
	return m, nil
}

// WriteTar writes the release in dir as a tar stream for Agent.Ingest: the
// manifest, the signatures, then every chunk of the manifest, each once.
// Chunks for which skip returns true are left out (nil skips none).
func WriteTar(w io.Writer, dir string, skip func(hash string) bool) error {
	manifest, sigs, err := ReadReleaseDir(dir)
	if err != nil {
		return err
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ManifestFile, manifest); err != nil {
		return fmt.Errorf("sending manifest: %w", err)
	}
	if err := add(SignaturesFile, sigs); err != nil {
		return fmt.Errorf("sending signatures: %w", err)
	}
	for _, c := range m.UniqueChunks() {
		if skip != nil && skip(c.Hash) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, ChunksDir, c.Hash))
		if err != nil {
			return fmt.Errorf("reading chunk: %w", err)
		}
		if err := add(ChunksDir+"/"+c.Hash, data); err != nil {
			return fmt.Errorf("sending chunk %.12s: %w", c.Hash, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing release stream: %w", err)
	}
	return nil
}

// readTar reads a release stream written by WriteTar. verify is called with
// the manifest and signatures before any chunk is read; put with each chunk
// of the manifest. Entries other than these are an error.
func readTar(r io.Reader, verify func(manifest, sigs []byte) (*Manifest, error), put func(hash string, data []byte) error) (*Manifest, error) {
	tr := tar.NewReader(r)
	var manifest, sigs []byte
	var m *Manifest
	var wanted map[string]int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%w: reading release stream (truncated?): %v", ErrMalformed, err)
		}
		if h.Typeflag != tar.TypeReg {
			return m, fmt.Errorf("%w: release stream entry %q is not a file", ErrMalformed, h.Name)
		}
		switch {
		case h.Name == ManifestFile && manifest == nil && m == nil:
			if manifest, err = readEntry(tr, h, MaxManifestSize); err != nil {
				return nil, err
			}
		case h.Name == SignaturesFile && sigs == nil && m == nil:
			if sigs, err = readEntry(tr, h, 64<<10); err != nil {
				return nil, err
			}
		case strings.HasPrefix(h.Name, ChunksDir+"/") && m != nil:
			hash := strings.TrimPrefix(h.Name, ChunksDir+"/")
			n, ok := wanted[hash]
			if !ok {
				return m, fmt.Errorf("%w: release stream carries chunk %.12s that the manifest does not list", ErrMalformed, hash)
			}
			data, err := readEntry(tr, h, n)
			if err != nil {
				return m, err
			}
			if int64(len(data)) != n {
				return m, fmt.Errorf("%w: chunk %.12s has %d bytes, want %d", ErrChunkMismatch, hash, len(data), n)
			}
			if err := put(hash, data); err != nil {
				return m, err
			}
		default:
			return m, fmt.Errorf("%w: unexpected entry %q in release stream (want %s, %s, then chunks)", ErrMalformed, h.Name, ManifestFile, SignaturesFile)
		}
		if m == nil && manifest != nil && sigs != nil {
			if m, err = verify(manifest, sigs); err != nil {
				return nil, err
			}
			wanted = map[string]int64{}
			for _, c := range m.UniqueChunks() {
				wanted[c.Hash] = c.Len
			}
		}
	}
	if m == nil {
		return nil, fmt.Errorf("%w: release stream has no %s and %s", ErrMalformed, ManifestFile, SignaturesFile)
	}
	return m, nil
}

func readEntry(tr *tar.Reader, h *tar.Header, limit int64) ([]byte, error) {
	if h.Size > limit || h.Size < 0 {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrMalformed, h.Name, h.Size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(tr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s (truncated?): %v", ErrMalformed, h.Name, err)
	}
	return data, nil
}
