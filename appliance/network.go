package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// NetworkFile, in the state directory, holds the network settings changed
// on the Settings page. They apply at the next start of cloudboxd (the page
// restarts it), over the flags.
const NetworkFile = "network.json"

// networkVersion is the version of NetworkFile.
const networkVersion = 1

// maxUpstreams bounds the DNS upstreams one can set.
const maxUpstreams = 8

// networkSettings is NetworkFile.
type networkSettings struct {
	Version int `json:"version"`
	// DNSUpstreams replace --dns-upstreams (and /etc/resolv.conf) when
	// not empty.
	DNSUpstreams []string `json:"dns_upstreams,omitempty"`
}

// loadNetwork reads NetworkFile in stateDir; a missing file is no
// settings.
func loadNetwork(stateDir string) (networkSettings, error) {
	var n networkSettings
	b, err := os.ReadFile(filepath.Join(stateDir, NetworkFile))
	if errors.Is(err, fs.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("reading the network settings: %w", err)
	}
	if err := json.Unmarshal(b, &n); err != nil || n.Version != networkVersion {
		return networkSettings{}, fmt.Errorf("%s is not network settings of version %d", NetworkFile, networkVersion)
	}
	if _, msg := parseUpstreams(strings.Join(n.DNSUpstreams, " ")); msg != "" {
		return networkSettings{}, fmt.Errorf("%s: %s", NetworkFile, msg)
	}
	return n, nil
}

// saveNetwork writes n atomically.
func saveNetwork(stateDir string, n networkSettings) error {
	n.Version = networkVersion
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(stateDir, NetworkFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the network settings: %w", err)
	}
	return nil
}

// parseUpstreams parses DNS upstreams separated by spaces, commas or
// lines: IP addresses with an optional port. It returns a message for
// people when one is wrong.
func parseUpstreams(s string) ([]string, string) {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		if _, err := netip.ParseAddr(f); err != nil {
			if _, err := netip.ParseAddrPort(f); err != nil {
				return nil, fmt.Sprintf("%q is not an IP address, with an optional port (192.0.2.53 or [2001:db8::53]:53).", f)
			}
		}
		out = append(out, f)
	}
	if len(out) > maxUpstreams {
		return nil, fmt.Sprintf("At most %d resolvers.", maxUpstreams)
	}
	return out, ""
}

// settingsNetwork saves the Settings page's network form and restarts
// cloudboxd to apply it.
func (h *handler) settingsNetwork(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	b := h.cfg.auth.accounts.box()
	f := settingsForm{Name: h.boxName(), Location: b.Location}
	ups, msg := parseUpstreams(r.PostFormValue("upstreams"))
	if msg != "" {
		f.Field, f.Error, f.Upstreams = "upstreams", msg, r.PostFormValue("upstreams")
		h.renderSettings(w, r, http.StatusBadRequest, f)
		return
	}
	if err := saveNetwork(h.cfg.stateDir, networkSettings{DNSUpstreams: ups}); err != nil {
		h.cfg.logger.Error("saving the network settings failed", "error", err)
		f.Error = "The network settings could not be saved: " + err.Error()
		h.renderSettings(w, r, http.StatusInternalServerError, f)
		return
	}
	h.cfg.logger.Info("network settings saved, restarting", "dns_upstreams", strings.Join(ups, ","))
	if h.cfg.restart != nil {
		h.cfg.restart()
	}
	d := h.pageFor(r, "Settings", "")
	d.Nav, d.CSRF, d.User = nil, "", ""
	h.render(w, http.StatusOK, h.panel.message, struct {
		pageData
		Heading, Message string
	}{d, "Network settings saved", "cloudboxd restarts now to apply them; the panel is back in a few seconds."})
}
