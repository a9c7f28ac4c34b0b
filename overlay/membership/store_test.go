package membership

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// saveAll stores every item of f in s.
func saveAll(t *testing.T, s *Store, f *fixture) {
	t.Helper()
	for _, err := range []error{
		s.SaveCommunity(f.c),
		s.SaveMembership(f.m),
		s.SaveRootKey(f.root),
		s.SaveRevocations(testRevocationList(t, f)),
		s.SaveRedemptions(testRedemptions(t, f)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "perm", "cloudbox", "overlay")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store directory: %v, mode %v; want 0700", err, fi.Mode())
	}
	saveAll(t, s, f)
	// Saving again replaces the files in place.
	saveAll(t, s, f)

	c, err := s.LoadCommunity()
	if err != nil || !c.Equal(f.c) {
		t.Errorf("LoadCommunity = %+v, %v; want %+v", c, err, f.c)
	}
	m, err := s.LoadMembership()
	if err != nil || !reflect.DeepEqual(m, f.m) {
		t.Errorf("LoadMembership = %+v, %v; want %+v", m, err, f.m)
	}
	root, err := s.LoadRootKey()
	if err != nil || !root.Equal(f.root) {
		t.Errorf("LoadRootKey: %v; key equal: %v", err, root.Equal(f.root))
	}
	l, err := s.LoadRevocations()
	if err != nil || !reflect.DeepEqual(l, testRevocationList(t, f)) {
		t.Errorf("LoadRevocations = %+v, %v", l, err)
	}
	r, err := s.LoadRedemptions()
	if err != nil || !reflect.DeepEqual(r.Records(), testRedemptions(t, f).Records()) {
		t.Errorf("LoadRedemptions: %v", err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	want := []string{CommunityFile, MembershipFile, RedemptionsFile, RevocationsFile, RootKeyFile}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q (no temporary files)", names, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, RootKeyFile)); !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("root.key is not PEM PKCS #8:\n%s", b)
	}
}

func TestStoreMissing(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadCommunity(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCommunity: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.LoadMembership(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadMembership: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.LoadRootKey(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadRootKey: %v, want fs.ErrNotExist", err)
	}
	if l, err := s.LoadRevocations(); l != nil || err != nil {
		t.Errorf("LoadRevocations = %v, %v; want nil, nil", l, err)
	}
	if r, err := s.LoadRedemptions(); err != nil || r.Len() != 0 {
		t.Errorf("LoadRedemptions: %v; want an empty set", err)
	}
}

func TestStoreOpenNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil {
		t.Error("Open of a regular file succeeded")
	}
}

func TestStoreCorrupt(t *testing.T) {
	f := newFixture(t)
	goodCommunity := func(t *testing.T, s *Store) string {
		if err := s.SaveCommunity(f.c); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(s.Dir(), CommunityFile))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		file    string
		content func(t *testing.T, s *Store) string
		load    func(s *Store) error
	}{
		{CommunityFile, func(*testing.T, *Store) string { return "{" }, loadCommunity},
		{CommunityFile, func(t *testing.T, s *Store) string {
			return strings.Replace(goodCommunity(t, s), `"version": 1`, `"version": 2`, 1)
		}, loadCommunity},
		{CommunityFile, func(t *testing.T, s *Store) string {
			return strings.Replace(goodCommunity(t, s), `"name"`, `"nom"`, 1)
		}, loadCommunity},
		{CommunityFile, func(t *testing.T, s *Store) string {
			return strings.Replace(goodCommunity(t, s), f.c.ID().String(), "aaaaaaaaaaaaaaaa", 1)
		}, loadCommunity},
		{CommunityFile, func(t *testing.T, s *Store) string {
			return strings.Replace(goodCommunity(t, s), f.c.IPv6().String(), "fd00::/48", 1)
		}, loadCommunity},
		{CommunityFile, func(t *testing.T, s *Store) string {
			return strings.Replace(goodCommunity(t, s), "198.18.0.0/15", "198.18.0.0/31", 1)
		}, loadCommunity},
		{CommunityFile, func(t *testing.T, s *Store) string { return goodCommunity(t, s) + "{}" }, loadCommunity},
		{MembershipFile, func(*testing.T, *Store) string { return "CBM1\x01garbage" }, loadMembership},
		{MembershipFile, func(*testing.T, *Store) string { return strings.Repeat("x", MaxMembershipSize+1) }, loadMembership},
		{RootKeyFile, func(*testing.T, *Store) string { return "not a key" }, loadRootKey},
		{RootKeyFile, func(*testing.T, *Store) string {
			return "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		}, loadRootKey},
		{RevocationsFile, func(*testing.T, *Store) string { return "" }, loadRevocations},
		{RedemptionsFile, func(*testing.T, *Store) string { return "CBU1\x01\x00\x00\x00\x01" }, loadRedemptions},
	} {
		t.Run(tc.file, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			content := tc.content(t, s)
			path := filepath.Join(s.Dir(), tc.file)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			err = tc.load(s)
			checkErr(t, err, ErrMalformed)
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Error("the corrupt file was changed")
			}
		})
	}
}

func loadCommunity(s *Store) error   { _, err := s.LoadCommunity(); return err }
func loadMembership(s *Store) error  { _, err := s.LoadMembership(); return err }
func loadRootKey(s *Store) error     { _, err := s.LoadRootKey(); return err }
func loadRevocations(s *Store) error { _, err := s.LoadRevocations(); return err }
func loadRedemptions(s *Store) error { _, err := s.LoadRedemptions(); return err }

func TestWriteFileAtomicFailure(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory cannot be renamed over: the write fails after
	// the temporary file was written.
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(target, []byte("new"), 0o600); err == nil {
		t.Fatal("writeFileAtomic succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "target" || !entries[0].IsDir() {
		t.Errorf("directory holds %v, want only the old target", entries)
	}
}
