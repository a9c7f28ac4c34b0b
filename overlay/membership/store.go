package membership

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// Names of the files in a Store directory.
const (
	CommunityFile   = "community.json"
	MembershipFile  = "membership.bin"
	RootKeyFile     = "root.key"
	RevocationsFile = "revocations.bin"
	RedemptionsFile = "redemptions.bin"
)

// maxSmallFile bounds community.json and root.key.
const maxSmallFile = 4 << 10

// Store keeps the membership state of a box in a directory (on a box
// /perm/cloudbox/overlay), one file per item, described in the package
// comment. Every file is written atomically with mode 0600. A file that
// cannot be parsed is reported with its path and never replaced by Load.
//
// Create a Store with Open; the zero value is not usable. A Store holds no
// state besides the directory: its methods are safe for concurrent use, and
// when two goroutines save the same item the last rename wins. One process
// owns the directory.
type Store struct {
	dir string
}

// Open returns the store in dir, creating dir and its parents with mode 0700
// if they do not exist.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening membership store: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening membership store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening membership store: %s is not a directory", dir)
	}
	return &Store{dir: dir}, nil
}

// Dir returns the directory of the store.
func (s *Store) Dir() string { return s.dir }

func (s *Store) load(name string, max int, parse func([]byte) error) error {
	path := filepath.Join(s.dir, name)
	b, err := readFile(path, max)
	if err == nil {
		err = parse(b)
	}
	if err != nil {
		return fmt.Errorf("loading %s: %w", path, err)
	}
	return nil
}

func (s *Store) save(name string, data []byte) error {
	path := filepath.Join(s.dir, name)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}

// communityFileV1 is community.json. ID and IPv6Prefix are derived from the
// root key; they are there for people and checked on load.
type communityFileV1 struct {
	Version    int    `json:"version"`
	Name       string `json:"name"`
	ID         string `json:"id"`
	RootKey    string `json:"root_key"`
	IPv4Prefix string `json:"ipv4_prefix"`
	IPv6Prefix string `json:"ipv6_prefix"`
}

// LoadCommunity returns the community this box belongs to. An error wraps
// fs.ErrNotExist when the box has not joined one.
func (s *Store) LoadCommunity() (Community, error) {
	var c Community
	err := s.load(CommunityFile, maxSmallFile, func(b []byte) (err error) {
		c, err = decodeCommunityFile(b)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil
	})
	return c, err
}

// SaveCommunity stores c, which must be valid.
func (s *Store) SaveCommunity(c Community) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("saving community: %w", err)
	}
	b, err := json.MarshalIndent(communityFileV1{
		Version:    formatVersion,
		Name:       c.Name,
		ID:         c.ID().String(),
		RootKey:    base64.StdEncoding.EncodeToString(c.RootKey),
		IPv4Prefix: c.IPv4.String(),
		IPv6Prefix: c.IPv6().String(),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("saving community: %w", err)
	}
	return s.save(CommunityFile, append(b, '\n'))
}

func decodeCommunityFile(b []byte) (Community, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f communityFileV1
	if err := dec.Decode(&f); err != nil {
		return Community{}, fmt.Errorf("parsing json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Community{}, errors.New("parsing json: trailing data after the object")
	}
	if f.Version != formatVersion {
		return Community{}, fmt.Errorf(`field "version": %d, want %d`, f.Version, formatVersion)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(f.RootKey)
	if err != nil {
		return Community{}, fmt.Errorf(`field "root_key": %w`, err)
	}
	v4, err := netip.ParsePrefix(f.IPv4Prefix)
	if err != nil {
		return Community{}, fmt.Errorf(`field "ipv4_prefix": %w`, err)
	}
	c := Community{Name: f.Name, RootKey: key, IPv4: v4}
	if err := c.Validate(); err != nil {
		return Community{}, err
	}
	if f.ID != c.ID().String() {
		return Community{}, fmt.Errorf(`field "id": %q, but the root key gives %q`, f.ID, c.ID())
	}
	if f.IPv6Prefix != c.IPv6().String() {
		return Community{}, fmt.Errorf(`field "ipv6_prefix": %q, but the root key gives %q`, f.IPv6Prefix, c.IPv6())
	}
	return c, nil
}

// LoadMembership returns this box's membership. An error wraps
// fs.ErrNotExist when the box is not a member yet.
func (s *Store) LoadMembership() (*Membership, error) {
	m := new(Membership)
	if err := s.load(MembershipFile, MaxMembershipSize, m.UnmarshalBinary); err != nil {
		return nil, err
	}
	return m, nil
}

// SaveMembership stores this box's membership.
func (s *Store) SaveMembership(m *Membership) error {
	b, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("saving membership: %w", err)
	}
	return s.save(MembershipFile, b)
}

const pemPrivateKey = "PRIVATE KEY"

// LoadRootKey returns the community root key. An error wraps fs.ErrNotExist
// on boxes that do not hold it.
func (s *Store) LoadRootKey() (ed25519.PrivateKey, error) {
	var key ed25519.PrivateKey
	err := s.load(RootKeyFile, maxSmallFile, func(b []byte) error {
		block, rest := pem.Decode(b)
		if block == nil || !bytes.HasPrefix(b, []byte("-----BEGIN ")) || block.Type != pemPrivateKey || len(bytes.TrimSpace(rest)) > 0 {
			return fmt.Errorf("%w: not a single PEM %q block", ErrMalformed, pemPrivateKey)
		}
		k, err := parsePKCS8(block.Bytes)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		key = k
		return nil
	})
	return key, err
}

// SaveRootKey stores the community root key as PKCS #8 in PEM (RFC 8410,
// section 7), readable by common tools.
func (s *Store) SaveRootKey(key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("saving root key: %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return s.save(RootKeyFile, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: marshalPKCS8(key)}))
}

// LoadRevocations returns the stored revocation list, or nil if there is
// none. It does not verify the signature.
func (s *Store) LoadRevocations() (*RevocationList, error) {
	l := new(RevocationList)
	err := s.load(RevocationsFile, MaxRevocationListSize, l.UnmarshalBinary)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return l, nil
}

// SaveRevocations stores l.
func (s *Store) SaveRevocations(l *RevocationList) error {
	b, err := l.MarshalBinary()
	if err != nil {
		return fmt.Errorf("saving revocations: %w", err)
	}
	return s.save(RevocationsFile, b)
}

// LoadRedemptions returns the stored redemptions, or an empty set if there
// are none.
func (s *Store) LoadRedemptions() (*Redemptions, error) {
	r := new(Redemptions)
	err := s.load(RedemptionsFile, MaxRedemptionsSize, r.UnmarshalBinary)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return r, nil
}

// SaveRedemptions stores r.
func (s *Store) SaveRedemptions(r *Redemptions) error {
	b, err := r.MarshalBinary()
	if err != nil {
		return fmt.Errorf("saving redemptions: %w", err)
	}
	return s.save(RedemptionsFile, b)
}
