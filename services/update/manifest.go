package update

import (
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"time"
)

// Limits of a manifest; a manifest beyond them is malformed.
const (
	// FormatVersion is the manifest format this package writes and reads.
	FormatVersion = 1
	// DefaultChunkSize is the chunk size of releases built with Split.
	DefaultChunkSize = 1 << 20
	// MaxManifestSize bounds the manifest file.
	MaxManifestSize = 1 << 20
	// MaxArtifacts bounds the artifacts of one release.
	MaxArtifacts = 256
	// MaxArtifactSize bounds one artifact (the root slot is 500 MiB).
	MaxArtifactSize = 1 << 30
	// MaxSpread bounds the rollout spread.
	MaxSpread = 90 * 24 * time.Hour
)

// RootArtifact is the name of the root filesystem artifact of a box's
// release; boot files are named "boot/" plus their path on the boot
// partition.
const RootArtifact = "root"

// DaemonArtifact is the name of the only artifact of a router's release:
// the cloudboxd binary of its OpenWrt package (image/openwrt).
const DaemonArtifact = "cloudboxd"

// Manifest describes a release. Its JSON encoding, byte for byte, is what the
// release keys sign.
type Manifest struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Board is the board the release is for ("rpi", "amd64").
	Board string `json:"board"`
	// Version is the release's version (see ParseVersion), never "dev".
	Version string `json:"version"`
	// Channel is the release channel ("stable", "testing"); a box takes
	// releases of its own channel only.
	Channel string `json:"channel"`
	// MinVersion is the oldest running version that may update to this
	// release; empty means any.
	MinVersion string `json:"min_version,omitempty"`
	// Downgrade allows boxes running a newer version to install this one.
	Downgrade bool `json:"downgrade,omitempty"`
	// Date is when the release was made; informational only (verification
	// does not compare it with any clock).
	Date time.Time `json:"date"`
	// SpreadSeconds is the rollout spread: each box installs the release at
	// a moment of its own within this many seconds after it has the release.
	SpreadSeconds int64 `json:"rollout_spread_s"`
	// ChunkSize is the size of every chunk but the last of each artifact.
	ChunkSize int64 `json:"chunk_size"`
	// Artifacts are the release's files.
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact is one file of a release, split into chunks.
type Artifact struct {
	// Name is RootArtifact or "boot/<path>" in a box's release,
	// DaemonArtifact in a router's.
	Name string `json:"name"`
	// Size is the artifact's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the whole artifact.
	SHA256 string `json:"sha256"`
	// Chunks are the hex SHA-256 of each ChunkSize piece, in order.
	Chunks []string `json:"chunks"`
}

// Spread returns the rollout spread.
func (m *Manifest) Spread() time.Duration { return time.Duration(m.SpreadSeconds) * time.Second }

// Size is the sum of the artifact sizes.
func (m *Manifest) Size() int64 {
	var n int64
	for _, a := range m.Artifacts {
		n += a.Size
	}
	return n
}

// ChunkLen returns the length of chunk i of artifact a.
func (m *Manifest) ChunkLen(a Artifact, i int) int64 {
	return min(m.ChunkSize, a.Size-int64(i)*m.ChunkSize)
}

// UniqueChunks returns every distinct chunk hash of the release with its
// length, in order of first appearance.
func (m *Manifest) UniqueChunks() []ChunkRef {
	seen := map[string]bool{}
	var out []ChunkRef
	for _, a := range m.Artifacts {
		for i, c := range a.Chunks {
			if !seen[c] {
				seen[c] = true
				out = append(out, ChunkRef{Hash: c, Len: m.ChunkLen(a, i)})
			}
		}
	}
	return out
}

// ChunkRef names one chunk of a release.
type ChunkRef struct {
	Hash string // hex SHA-256
	Len  int64
}

// ParseManifest decodes and validates a manifest. It refuses unknown fields,
// trailing data and anything Validate refuses; the error says which field.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest is %d bytes, more than %d", ErrMalformed, len(data), MaxManifestSize)
	}
	var m Manifest
	if err := strictJSON(data, &m); err != nil {
		return nil, fmt.Errorf("%w: decoding manifest: %v", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field of m.
func (m *Manifest) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: manifest field %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
	}
	if m.Format != FormatVersion {
		return bad("format", "%d, want %d (a newer cloudbox may read it)", m.Format, FormatVersion)
	}
	if !validName(m.Board) {
		return bad("board", "%q is not a board name", m.Board)
	}
	if !validName(m.Channel) {
		return bad("channel", "%q is not a channel name", m.Channel)
	}
	v, err := ParseVersion(m.Version)
	if err != nil || v.IsDev() {
		return bad("version", "%q: want numbers like 1.4.2", m.Version)
	}
	if m.MinVersion != "" {
		mv, err := ParseVersion(m.MinVersion)
		if err != nil || mv.IsDev() {
			return bad("min_version", "%q: want numbers like 1.4.2", m.MinVersion)
		}
	}
	if m.SpreadSeconds < 0 || m.SpreadSeconds > int64(MaxSpread/time.Second) {
		return bad("rollout_spread_s", "%d is outside 0..%d", m.SpreadSeconds, int64(MaxSpread/time.Second))
	}
	if m.ChunkSize < 4096 || m.ChunkSize > 16<<20 {
		return bad("chunk_size", "%d is outside 4096..%d", m.ChunkSize, 16<<20)
	}
	if len(m.Artifacts) == 0 || len(m.Artifacts) > MaxArtifacts {
		return bad("artifacts", "%d artifacts, want 1 to %d", len(m.Artifacts), MaxArtifacts)
	}
	names := map[string]bool{}
	hasRoot, hasDaemon := false, false
	for i, a := range m.Artifacts {
		field := fmt.Sprintf("artifacts[%d]", i)
		switch p, ok := strings.CutPrefix(a.Name, "boot/"); {
		case a.Name == RootArtifact:
			hasRoot = true
		case a.Name == DaemonArtifact:
			hasDaemon = true
		case !ok || !validBootPath(p):
			return bad(field+".name", "%q: want %q, %q or boot/<path>", a.Name, RootArtifact, DaemonArtifact)
		}
		if names[strings.ToLower(a.Name)] {
			return bad(field+".name", "%q appears twice", a.Name)
		}
		names[strings.ToLower(a.Name)] = true
		if a.Size < 0 || a.Size > MaxArtifactSize {
			return bad(field+".size", "%d is outside 0..%d", a.Size, int64(MaxArtifactSize))
		}
		if !validHash(a.SHA256) {
			return bad(field+".sha256", "not a hex SHA-256")
		}
		want := (a.Size + m.ChunkSize - 1) / m.ChunkSize
		if int64(len(a.Chunks)) != want {
			return bad(field+".chunks", "%d chunks for %d bytes of %d-byte chunks, want %d", len(a.Chunks), a.Size, m.ChunkSize, want)
		}
		for j, c := range a.Chunks {
			if !validHash(c) {
				return bad(fmt.Sprintf("%s.chunks[%d]", field, j), "not a hex SHA-256")
			}
		}
	}
	switch {
	case hasDaemon && len(m.Artifacts) > 1:
		return bad("artifacts", "a router's release carries %q alone", DaemonArtifact)
	case !hasRoot && !hasDaemon:
		return bad("artifacts", "no %q artifact (a box's release) or %q (a router's)", RootArtifact, DaemonArtifact)
	}
	return nil
}

// validName accepts board and channel names: 1 to 32 lowercase letters,
// digits, '-' and '_'.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// validBootPath accepts a clean relative slash path of printable ASCII
// without "..": a file on the FAT boot partition.
func validBootPath(p string) bool {
	if p == "" || len(p) > 200 || path.Clean(p) != p || strings.HasPrefix(p, "/") || p == "." {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return false
		}
	}
	for _, r := range p {
		if r <= ' ' || r > '~' || r == '\\' {
			return false
		}
	}
	return true
}

// validHash accepts 64 lowercase hex digits.
func validHash(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
