package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/cloudbox/cloudbox/boards"
)

// openInstaller returns the installer of a box, or nil and why not (empty
// in host mode).
func openInstaller(cfg UpdateConfig, dir, board, version string, healthy func(context.Context) error, log *slog.Logger) (*installer, string) {
	if !updateInProfile {
		return nil, "" // routers have no root slots; see apply_other.go
	}
	disk, ok, err := openSlotDisk()
	if !ok {
		return nil, ""
	}
	if err != nil {
		log.Warn("updates cannot be installed", "error", err)
		return nil, fmt.Sprintf("updates cannot be installed: %v", err)
	}
	trial := cfg.TrialTime
	if trial == 0 {
		if trial, err = time.ParseDuration(defaultTrialTime); err != nil || trial <= 0 {
			trial = 5 * time.Minute
		}
	}
	patterns := []string{"vmlinuz"}
	if b, err := boards.Lookup(board); err == nil {
		patterns = b.KernelFiles
	}
	return &installer{
		disk: disk, stateFile: filepath.Join(dir, installFile), running: version, trial: trial,
		slotFile: func(p string) bool {
			for _, pat := range patterns {
				if ok, _ := filepath.Match(pat, filepath.FromSlash(p)); ok {
					return true
				}
			}
			return false
		},
		reboot:        func(tryboot bool, why string) error { return rebootBox(tryboot, board == "rpi", why) },
		healthy:       healthy,
		markCommitted: markTrialCommitted,
		now:           time.Now,
		log:           log,
	}, ""
}

// healthy is the health check of a trial boot: the panel answers
// /healthz, and a member of a community reaches at least one peer over
// the overlay.
func (u *updateService) healthy(ctx context.Context) error {
	host, port, err := net.SplitHostPort(u.panelAddr)
	if err != nil {
		return errors.New("the panel does not listen yet")
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("checking the panel: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the panel does not answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the panel answers %s", resp.Status)
	}
	if u.ov == nil {
		return nil
	}
	v := u.ov.view()
	if v.NotMember || len(v.Members) <= 1 {
		return nil // no community, or no other box in it
	}
	if !v.Running {
		return fmt.Errorf("the overlay is not running (%s)", cmp.Or(v.Problem, v.State))
	}
	if len(u.ov.rtts()) == 0 {
		return errors.New("no peer answers over the overlay yet")
	}
	return nil
}
