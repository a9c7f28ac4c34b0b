package appliance

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// PanelDir is the directory, inside the state directory, that holds the
// panel's accounts, API tokens and box settings ([AccountsFile]). Removing
// it is the factory reset of the panel: the first-boot wizard runs again
// on the next start (see README).
const PanelDir = "panel"

// AccountsFile is the name of the accounts file in PanelDir.
const AccountsFile = "accounts.json"

// accountsVersion is the version of the accounts file.
const accountsVersion = 1

// Roles of accounts.
const (
	// roleAdmin may do everything: accounts, community, revocation.
	roleAdmin = "admin"
	// roleMember may look at everything and publish services.
	roleMember = "member"
)

// apiTokenPrefix starts every API token, so that people and secret
// scanners recognize one.
const apiTokenPrefix = "cbt_"

// maxAccounts and maxTokens bound the accounts file.
const (
	maxAccounts = 100
	maxTokens   = 100
)

// Errors of the account store, shown to people by the panel.
var (
	errAccountExists  = errors.New("an account with this name exists already; pick another name")
	errNoSuchAccount  = errors.New("no such account")
	errTooMany        = errors.New("too many accounts or tokens on this box; delete some first")
	errLastAdmin      = errors.New("the last administrator cannot be deleted")
	errBadAccountName = errors.New("the name must be 1 to 32 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
)

var accountNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// accountsFile is the content of AccountsFile.
type accountsFile struct {
	Version int `json:"version"`
	// SetupDone is set when the first-boot wizard finished; until then the
	// panel shows only the wizard.
	SetupDone bool        `json:"setup_done"`
	Box       boxSettings `json:"box"`
	Accounts  []account   `json:"accounts"`
	Tokens    []apiToken  `json:"tokens"`
}

// boxSettings is what the wizard asks about the box.
type boxSettings struct {
	Name     string `json:"name,omitempty"`
	Location string `json:"location,omitempty"`
}

type account struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Hash    string    `json:"hash"` // PHC string, see hashPassword
	Created time.Time `json:"created"`
	// Lang is the panel's language the account chose (i18n.go), "" for
	// none yet.
	Lang string `json:"lang,omitempty"`
}

// apiToken is an API token; only the SHA-256 of its secret is stored (the
// secret has 256 bits of entropy, so a fast hash is enough).
type apiToken struct {
	ID      string    `json:"id"`
	Account string    `json:"account"`
	Label   string    `json:"label"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// accountStore keeps the accounts file in memory and writes it atomically
// on every change. It is safe for concurrent use; one process owns the file.
type accountStore struct {
	path string // immutable

	mu sync.Mutex
	f  accountsFile
}

// openAccounts loads the accounts file in stateDir, or starts an empty one
// (setup not done) when there is none.
func openAccounts(stateDir string) (*accountStore, error) {
	s := &accountStore{path: filepath.Join(stateDir, PanelDir, AccountsFile)}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.f = accountsFile{Version: accountsVersion}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading panel accounts: %w", err)
	}
	f, err := decodeAccounts(b)
	if err != nil {
		return nil, fmt.Errorf("reading panel accounts %s: %w (a factory reset of the panel removes %s)", s.path, err, filepath.Dir(s.path))
	}
	s.f = f
	return s, nil
}

// decodeAccounts parses and validates an accounts file completely.
func decodeAccounts(b []byte) (accountsFile, error) {
	var f accountsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("decoding: %w", err)
	}
	if f.Version != accountsVersion {
		return f, fmt.Errorf("version: %d, want %d", f.Version, accountsVersion)
	}
	if len(f.Accounts) > maxAccounts || len(f.Tokens) > maxTokens {
		return f, errTooMany
	}
	names := map[string]bool{}
	for i, a := range f.Accounts {
		if !accountNameRE.MatchString(a.Name) || names[a.Name] {
			return f, fmt.Errorf("accounts[%d].name: %q invalid or repeated", i, a.Name)
		}
		names[a.Name] = true
		if a.Role != roleAdmin && a.Role != roleMember {
			return f, fmt.Errorf("accounts[%d].role: %q, want %q or %q", i, a.Role, roleAdmin, roleMember)
		}
		if _, err := checkHashFormat(a.Hash); err != nil {
			return f, fmt.Errorf("accounts[%d].hash: %w", i, err)
		}
		if a.Lang != "" && !knownLanguage(a.Lang) {
			return f, fmt.Errorf("accounts[%d].lang: %q is not a language of the panel", i, a.Lang)
		}
	}
	for i, tk := range f.Tokens {
		if !names[tk.Account] {
			return f, fmt.Errorf("tokens[%d].account: no account %q", i, tk.Account)
		}
		if h, err := hex.DecodeString(tk.Hash); err != nil || len(h) != sha256.Size || tk.ID == "" {
			return f, fmt.Errorf("tokens[%d]: want an id and a hex SHA-256 hash", i)
		}
	}
	if f.SetupDone && !slices.ContainsFunc(f.Accounts, func(a account) bool { return a.Role == roleAdmin }) {
		return f, errors.New("setup_done: true without an administrator")
	}
	return f, nil
}

// checkHashFormat checks that a PHC string parses, without hashing.
func checkHashFormat(h string) (bool, error) {
	if len(h) > 256 {
		return false, errBadHash
	}
	var salt, key string
	var m, t uint32
	var p uint8
	var v int
	if n, err := fmt.Sscanf(h, "$argon2id$v=%d$m=%d,t=%d,p=%d$%s", &v, &m, &t, &p, &salt); n != 5 || err != nil {
		return false, errBadHash
	}
	for i := range salt {
		if salt[i] == '$' {
			salt, key = salt[:i], salt[i+1:]
			break
		}
	}
	if salt == "" || key == "" {
		return false, errBadHash
	}
	return true, nil
}

// save writes f; the caller holds mu. On error s.f is unchanged.
func (s *accountStore) save(f accountsFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding panel accounts: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(s.path), err)
	}
	if err := atomicfile.Write(s.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing panel accounts: %w (check that the state directory is writable and not full)", err)
	}
	s.f = f
	return nil
}

// update applies edit to a copy of the file and saves it.
func (s *accountStore) update(edit func(f *accountsFile) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.f
	f.Accounts = slices.Clone(f.Accounts)
	f.Tokens = slices.Clone(f.Tokens)
	if err := edit(&f); err != nil {
		return err
	}
	return s.save(f)
}

func (s *accountStore) setupDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.SetupDone
}

func (s *accountStore) box() boxSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Box
}

// accounts returns every account, by name.
func (s *accountStore) accounts() []account {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.f.Accounts)
}

// lookup returns the account name.
func (s *accountStore) lookup(name string) (account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.f.Accounts, func(a account) bool { return a.Name == name })
	if i < 0 {
		return account{}, false
	}
	return s.f.Accounts[i], true
}

// setAccount creates the account name, or replaces it when replace is set.
func (s *accountStore) setAccount(name, role, password string, replace bool, now time.Time) error {
	if !accountNameRE.MatchString(name) {
		return errBadAccountName
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.update(func(f *accountsFile) error {
		a := account{Name: name, Role: role, Hash: hash, Created: now.UTC()}
		i := slices.IndexFunc(f.Accounts, func(a account) bool { return a.Name == name })
		switch {
		case i >= 0 && !replace:
			return errAccountExists
		case i >= 0:
			a.Lang = f.Accounts[i].Lang
			f.Accounts[i] = a
		case len(f.Accounts) >= maxAccounts:
			return errTooMany
		default:
			f.Accounts = append(f.Accounts, a)
			order := func(a, b account) int { return strings.Compare(a.Name, b.Name) }
			sort.Slice(f.Accounts, func(i, j int) bool { return order(f.Accounts[i], f.Accounts[j]) < 0 })
		}
		return nil
	})
}

// deleteAccount removes an account and its tokens; the last administrator
// stays.
func (s *accountStore) deleteAccount(name string) error {
	return s.update(func(f *accountsFile) error {
		i := slices.IndexFunc(f.Accounts, func(a account) bool { return a.Name == name })
		if i < 0 {
			return errNoSuchAccount
		}
		if f.Accounts[i].Role == roleAdmin &&
			!slices.ContainsFunc(f.Accounts, func(a account) bool { return a.Role == roleAdmin && a.Name != name }) {
			return errLastAdmin
		}
		f.Accounts = slices.Delete(f.Accounts, i, i+1)
		f.Tokens = slices.DeleteFunc(f.Tokens, func(t apiToken) bool { return t.Account == name })
		return nil
	})
}

// dummyHash is checked against when an account does not exist, so that a
// wrong name takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, _ := hashPassword("not a password of anyone")
	return h
})

// authenticate returns the account when name and password match.
func (s *accountStore) authenticate(name, password string) (account, bool) {
	a, ok := s.lookup(name)
	hash := a.Hash
	if !ok {
		hash = dummyHash()
	}
	match, err := checkPassword(hash, password)
	return a, ok && match && err == nil
}

// newToken creates an API token of account and returns its secret, which
// is not stored.
func (s *accountStore) newToken(accountName, label string, now time.Time) (string, apiToken, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", apiToken{}, fmt.Errorf("reading random token: %w", err)
	}
	secret := apiTokenPrefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	tk := apiToken{ID: hex.EncodeToString(sum[:4]), Account: accountName, Label: label, Hash: hex.EncodeToString(sum[:]), Created: now.UTC()}
	err := s.update(func(f *accountsFile) error {
		if !slices.ContainsFunc(f.Accounts, func(a account) bool { return a.Name == accountName }) {
			return errNoSuchAccount
		}
		if len(f.Tokens) >= maxTokens {
			return errTooMany
		}
		f.Tokens = append(f.Tokens, tk)
		return nil
	})
	if err != nil {
		return "", apiToken{}, err
	}
	return secret, tk, nil
}

// tokens returns the API tokens of account.
func (s *accountStore) tokens(accountName string) []apiToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []apiToken
	for _, t := range s.f.Tokens {
		if t.Account == accountName {
			out = append(out, t)
		}
	}
	return out
}

// deleteToken removes the token id of account.
func (s *accountStore) deleteToken(accountName, id string) error {
	return s.update(func(f *accountsFile) error {
		n := len(f.Tokens)
		f.Tokens = slices.DeleteFunc(f.Tokens, func(t apiToken) bool { return t.Account == accountName && t.ID == id })
		if len(f.Tokens) == n {
			return errors.New("no such token")
		}
		return nil
	})
}

// tokenAccount returns the account of an API token secret.
func (s *accountStore) tokenAccount(secret string) (account, bool) {
	sum := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	var name string
	for _, t := range s.f.Tokens {
		h, _ := hex.DecodeString(t.Hash)
		if subtle.ConstantTimeCompare(h, sum[:]) == 1 {
			name = t.Account
		}
	}
	s.mu.Unlock()
	if name == "" {
		return account{}, false
	}
	return s.lookup(name)
}

// setLang saves the language an account chose.
func (s *accountStore) setLang(name, lang string) error {
	return s.update(func(f *accountsFile) error {
		i := slices.IndexFunc(f.Accounts, func(a account) bool { return a.Name == name })
		if i < 0 {
			return errNoSuchAccount
		}
		f.Accounts[i].Lang = lang
		return nil
	})
}

// setBox saves the box settings.
func (s *accountStore) setBox(b boxSettings) error {
	return s.update(func(f *accountsFile) error {
		f.Box = b
		return nil
	})
}

// finishSetup marks the wizard done; it needs an administrator.
func (s *accountStore) finishSetup() error {
	return s.update(func(f *accountsFile) error {
		if !slices.ContainsFunc(f.Accounts, func(a account) bool { return a.Role == roleAdmin }) {
			return errors.New("no administrator yet")
		}
		f.SetupDone = true
		return nil
	})
}

// resetUnfinished forgets the accounts of a wizard that did not finish, so
// that whoever proves physical possession next sets the administrator.
func (s *accountStore) resetUnfinished() error {
	return s.update(func(f *accountsFile) error {
		if f.SetupDone {
			return errors.New("setup is done")
		}
		f.Accounts, f.Tokens = nil, nil
		return nil
	})
}
