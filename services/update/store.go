package update

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// Names inside a release directory and a Store.
const (
	ManifestFile   = "manifest.json"
	SignaturesFile = "manifest.sig"
	ChunksDir      = "chunks"
	releasesDir    = "releases"
)

// Store keeps chunks by hash and release manifests by version in a
// directory: chunks/<sha256>, releases/<version>/{manifest.json,
// manifest.sig}. Every file is written atomically, so a power cut leaves
// whole chunks or none. A Store is safe for concurrent use; it checks hashes,
// not signatures (the Agent verifies a release before storing it).
type Store struct {
	dir string
}

// OpenStore opens (creating as needed) the store in dir.
func OpenStore(dir string) (*Store, error) {
	for _, d := range []string{filepath.Join(dir, ChunksDir), filepath.Join(dir, releasesDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating update store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

func (s *Store) chunkPath(hash string) string { return filepath.Join(s.dir, ChunksDir, hash) }

// HasChunk reports whether the chunk is stored.
func (s *Store) HasChunk(hash string) bool {
	if !validHash(hash) {
		return false
	}
	_, err := os.Stat(s.chunkPath(hash))
	return err == nil
}

// PutChunk stores data as chunk hash after checking that it matches.
func (s *Store) PutChunk(hash string, data []byte) error {
	if sum := sha256.Sum256(data); !validHash(hash) || hex.EncodeToString(sum[:]) != hash {
		return fmt.Errorf("%w: chunk %.12s", ErrChunkMismatch, hash)
	}
	if s.HasChunk(hash) {
		return nil
	}
	if err := atomicfile.Write(s.chunkPath(hash), data, 0o644); err != nil {
		return fmt.Errorf("storing chunk %.12s (is the disk full?): %w", hash, err)
	}
	return nil
}

// OpenChunk opens a stored chunk for reading.
func (s *Store) OpenChunk(hash string) (*os.File, error) {
	if !validHash(hash) {
		return nil, fmt.Errorf("%w: chunk %q", ErrNotFound, hash)
	}
	f, err := os.Open(s.chunkPath(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: chunk %.12s", ErrNotFound, hash)
	}
	return f, err
}

// ReadChunk returns a stored chunk's bytes, checked against its hash; a
// damaged chunk is removed.
func (s *Store) ReadChunk(hash string) ([]byte, error) {
	f, err := s.OpenChunk(hash)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 16<<20+1))
	if err != nil {
		return nil, fmt.Errorf("reading chunk %.12s: %w", hash, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hash {
		// Drop it, so that it is fetched again.
		os.Remove(s.chunkPath(hash))
		return nil, fmt.Errorf("%w: stored chunk %.12s was damaged and is dropped", ErrChunkMismatch, hash)
	}
	return data, nil
}

// Missing returns the chunks of m the store does not hold.
func (s *Store) Missing(m *Manifest) []ChunkRef {
	var out []ChunkRef
	for _, c := range m.UniqueChunks() {
		if !s.HasChunk(c.Hash) {
			out = append(out, c)
		}
	}
	return out
}

func (s *Store) releaseDir(version string) string {
	return filepath.Join(s.dir, releasesDir, version)
}

// PutRelease stores a release's manifest and signatures under its version.
// The caller has verified them.
func (s *Store) PutRelease(m *Manifest, manifest, signatures []byte) error {
	d := s.releaseDir(m.Version)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("storing release %s: %w", m.Version, err)
	}
	if err := atomicfile.Write(filepath.Join(d, SignaturesFile), signatures, 0o644); err != nil {
		return fmt.Errorf("storing release %s: %w", m.Version, err)
	}
	if err := atomicfile.Write(filepath.Join(d, ManifestFile), manifest, 0o644); err != nil {
		return fmt.Errorf("storing release %s: %w", m.Version, err)
	}
	return nil
}

// Release returns the stored manifest and signature bytes of version.
func (s *Store) Release(version string) (manifest, signatures []byte, err error) {
	if _, perr := ParseVersion(version); perr != nil || version == "" || version == "dev" {
		return nil, nil, fmt.Errorf("%w: release %q", ErrNotFound, version)
	}
	d := s.releaseDir(version)
	manifest, err = os.ReadFile(filepath.Join(d, ManifestFile))
	if err == nil {
		signatures, err = os.ReadFile(filepath.Join(d, SignaturesFile))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: release %s", ErrNotFound, version)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading release %s: %w", version, err)
	}
	return manifest, signatures, nil
}

// Versions lists the stored releases, oldest first.
func (s *Store) Versions() []string {
	ents, _ := os.ReadDir(filepath.Join(s.dir, releasesDir))
	var vs []string
	for _, e := range ents {
		if _, err := ParseVersion(e.Name()); err == nil && e.IsDir() {
			if _, err := os.Stat(filepath.Join(s.releaseDir(e.Name()), ManifestFile)); err == nil {
				vs = append(vs, e.Name())
			}
		}
	}
	slices.SortFunc(vs, compareVersionStrings)
	return vs
}

func compareVersionStrings(a, b string) int {
	va, _ := ParseVersion(a)
	vb, _ := ParseVersion(b)
	return va.Compare(vb)
}

// RemoveRelease forgets a release (not its chunks; see Prune).
func (s *Store) RemoveRelease(version string) error {
	if _, err := ParseVersion(version); err != nil || version == "" {
		return fmt.Errorf("%w: release %q", ErrNotFound, version)
	}
	if err := os.RemoveAll(s.releaseDir(version)); err != nil {
		return fmt.Errorf("removing release %s: %w", version, err)
	}
	return nil
}

// Prune removes the chunks no manifest in keep refers to.
func (s *Store) Prune(keep []*Manifest) error {
	used := map[string]bool{}
	for _, m := range keep {
		for _, c := range m.UniqueChunks() {
			used[c.Hash] = true
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, ChunksDir))
	if err != nil {
		return fmt.Errorf("listing chunks: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if !used[e.Name()] {
			if err := os.Remove(s.chunkPath(e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// WriteArtifact writes artifact a of m to w from the stored chunks,
// checking each chunk and the whole artifact's hash.
func (s *Store) WriteArtifact(m *Manifest, a Artifact, w io.Writer) error {
	h := sha256.New()
	for i, c := range a.Chunks {
		data, err := s.ReadChunk(c)
		if err != nil {
			return fmt.Errorf("assembling %s: %w", a.Name, err)
		}
		if int64(len(data)) != m.ChunkLen(a, i) {
			return fmt.Errorf("%w: chunk %d of %s has %d bytes, want %d", ErrChunkMismatch, i, a.Name, len(data), m.ChunkLen(a, i))
		}
		h.Write(data)
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", a.Name, err)
		}
	}
	if hex.EncodeToString(h.Sum(nil)) != a.SHA256 {
		return fmt.Errorf("%w: %s as a whole", ErrChunkMismatch, a.Name)
	}
	return nil
}
