package services

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// stateFile is the name of the user services file in Config.StateDir.
const stateFile = "services.json"

// stateVersion is the format version of stateFile.
const stateVersion = 1

// stateDoc is stateFile's content.
type stateDoc struct {
	Version  int        `json:"version"`
	Services []docEntry `json:"services"`
}

// load reads the user services. A file that cannot be used is moved aside
// to services.json.corrupt-<time> (kept for the user to repair), logged as
// an error and counted, and the catalog starts without user services.
func (c *Catalog) load() error {
	if err := os.MkdirAll(c.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("catalog state: %w", err)
	}
	c.statePath = filepath.Join(c.cfg.StateDir, stateFile)
	b, err := os.ReadFile(c.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("catalog state: %w", err)
	}
	services, perr := parseState(b)
	if perr == nil {
		for _, s := range services {
			c.user[s.key()] = s
		}
		return nil
	}
	aside := c.statePath + ".corrupt-" + c.cfg.Now().UTC().Format("20060102T150405.000000000")
	if err := os.Rename(c.statePath, aside); err != nil {
		return fmt.Errorf("catalog state %s is unusable (%v) and could not be moved aside: %w", c.statePath, perr, err)
	}
	if err := atomicfile.SyncDir(c.cfg.StateDir); err != nil {
		return fmt.Errorf("catalog state: %w", err)
	}
	c.stats.stateCorrupt++
	c.log.Error("catalog state unusable, moved aside", "path", c.statePath, "moved_to", aside, "err", perr)
	return nil
}

// parseState decodes and validates the whole file; errors name the
// offending field.
func parseState(b []byte) ([]localService, error) {
	var d stateDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if d.Version != stateVersion {
		return nil, fmt.Errorf("version: %d, want %d", d.Version, stateVersion)
	}
	if len(d.Services) > MaxEntries {
		return nil, fmt.Errorf("services: %d, at most %d", len(d.Services), MaxEntries)
	}
	out := make([]localService, 0, len(d.Services))
	seen := make(map[string]bool)
	for i, e := range d.Services {
		s := e.service()
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("services[%d]: %w", i, err)
		}
		if seen[s.key()] {
			return nil, fmt.Errorf("services[%d]: %q of type %s appears twice", i, s.Instance, s.Type)
		}
		seen[s.key()] = true
		out = append(out, localService{Service: s, Updated: e.Updated})
	}
	return out, nil
}

// saveLocked writes the user services atomically (no-op without StateDir).
func (c *Catalog) saveLocked() error {
	if c.statePath == "" {
		return nil
	}
	d := stateDoc{Version: stateVersion, Services: []docEntry{}}
	for _, s := range c.user {
		d.Services = append(d.Services, docEntry{Instance: s.Instance, Type: s.Type, Port: s.Port,
			TXT: s.TXT, Description: s.Description, Addr: s.Addr, Healthy: true, Updated: s.Updated.UTC()})
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding catalog state: %w", err)
	}
	if err := atomicfile.Write(c.statePath, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving services to %s: %w (is the disk full or read-only?)", c.statePath, err)
	}
	return nil
}
