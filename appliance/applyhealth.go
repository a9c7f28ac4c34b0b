package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/cloudbox/cloudbox/internal/plainhttp"
)

// trialTime is how long a new version has to prove itself healthy:
// cfg.TrialTime, else defaultTrialTime.
func trialTime(cfg UpdateConfig) time.Duration {
	if cfg.TrialTime > 0 {
		return cfg.TrialTime
	}
	if trial, err := time.ParseDuration(defaultTrialTime); err == nil && trial > 0 {
		return trial
	}
	return 5 * time.Minute
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
	resp, err := plainhttp.NewClient(plainhttp.ClientConfig{DisableKeepAlives: true}).Do(req)
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
	if v.NotMember {
		return nil // no community
	}
	if !v.Running {
		return fmt.Errorf("the overlay is not running (%s)", cmp.Or(v.Problem, v.State))
	}
	if len(v.Members) <= 1 {
		return nil // no other box in the community
	}
	if len(u.ov.rtts()) == 0 {
		return errors.New("no peer answers over the overlay yet")
	}
	return nil
}
