//go:build !router

package appliance

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cloudbox/cloudbox/appliance/state"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/stream/voip"
)

// voipState is the persisted part: the box's prefix and its accounts'
// numbers and SIP passwords. Version 1.
type voipState struct {
	Version int                 `json:"version"`
	Prefix  string              `json:"prefix"`
	Users   map[string]voipUser `json:"users"`
}

type voipUser struct {
	Number int    `json:"number"`
	Secret string `json:"secret"`
}

// voipService is the telephony component.
type voipService struct {
	// Immutable after openVoIP.
	cfg  VoIPConfig
	deps voipDeps
	log  *slog.Logger
	now  func() time.Time
	dir  string

	// mu guards the following.
	mu      sync.Mutex
	st      voipState
	srv     *voip.Server // nil while not serving
	phones  *voip.Phones // nil while not serving or without ICEAddr
	problem string
	recent  []voip.Record         // newest last
	lines   map[string]*voip.Line // open browser lines, by extension
	rooms   map[string]roomEntry  // conference rooms made here, by token
}

// roomEntry is a conference room made on the panel; its token is in the
// room's link, which is all it takes to join.
type roomEntry struct {
	Title   string    `json:"title"`
	Owner   string    `json:"owner"`
	Created time.Time `json:"created"`
}

// openVoIPOf opens the telephony component of Run.
func openVoIPOf(cfg Config, node *state.Node, ov *overlayService, auth *authService, logger *slog.Logger) *voipService {
	return openVoIP(cfg.VoIP, voipDeps{nodeID: node.ID(), nodeName: node.Name, stateDir: cfg.StateDir,
		records: catalogRecords(ov.catalog), accounts: auth.accounts.accounts}, logger, cfg.Now)
}

func openVoIP(cfg VoIPConfig, deps voipDeps, logger *slog.Logger, now func() time.Time) *voipService {
	cfg.SIPAddr = cmp.Or(cfg.SIPAddr, DefaultSIPAddr)
	if cfg.RecordDays <= 0 {
		cfg.RecordDays = DefaultCallRecordDays
	}
	v := &voipService{cfg: cfg, deps: deps, log: logger.With("component", "voip"), now: now,
		dir: filepath.Join(deps.stateDir, VoIPDir), lines: map[string]*voip.Line{}, rooms: map[string]roomEntry{}}
	if err := v.load(); err != nil {
		v.problem = err.Error()
	}
	return v
}

// statePath is the file of the extensions.
func (v *voipService) statePath() string { return filepath.Join(v.dir, "extensions.json") }

// recordsPath is the file of the call records, one JSON object a line.
func (v *voipService) recordsPath() string { return filepath.Join(v.dir, "calls.jsonl") }

// load reads the extensions and the recent records.
func (v *voipService) load() error {
	v.st = voipState{Version: 1, Users: map[string]voipUser{}}
	b, err := os.ReadFile(v.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		v.st.Prefix = prefixFor(v.deps.nodeID, 0)
	case err != nil:
		return fmt.Errorf("reading extensions: %w", err)
	default:
		var st voipState
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("reading %s: %w; move it away to number the extensions anew", v.statePath(), err)
		}
		if st.Version != 1 {
			return fmt.Errorf("reading %s: version %d, want 1", v.statePath(), st.Version)
		}
		if len(st.Prefix) != 4 {
			return fmt.Errorf("reading %s: field prefix %q is not 4 digits", v.statePath(), st.Prefix)
		}
		if st.Users == nil {
			st.Users = map[string]voipUser{}
		}
		v.st = st
	}
	v.recent = readRecords(v.recordsPath(), voipRecent)
	return nil
}

// prefixFor derives a box's four-digit prefix from its node ID; attempt
// picks another one after a conflict.
func prefixFor(nodeID string, attempt int) string {
	h := fnv.New32a()
	h.Write([]byte(nodeID))
	if attempt > 0 {
		h.Write([]byte("#" + strconv.Itoa(attempt)))
	}
	return strconv.Itoa(1000 + int(h.Sum32()%9000))
}

func (v *voipService) saveLocked() error {
	b, err := json.MarshalIndent(v.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding extensions: %w", err)
	}
	if err := os.MkdirAll(v.dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", v.dir, err)
	}
	if err := atomicfile.Write(v.statePath(), b, 0o600); err != nil {
		return fmt.Errorf("writing extensions: %w", err)
	}
	return nil
}

// syncUsers gives every account a number and a SIP password and forgets
// deleted accounts.
func (v *voipService) syncUsers() {
	accs := v.deps.accounts()
	v.mu.Lock()
	defer v.mu.Unlock()
	changed := false
	names := map[string]bool{}
	for _, a := range accs {
		names[a.Name] = true
		if _, ok := v.st.Users[a.Name]; ok {
			continue
		}
		used := map[int]bool{}
		for _, u := range v.st.Users {
			used[u.Number] = true
		}
		n := 1
		for ; n <= voipMaxUsers && used[n]; n++ {
		}
		if n > voipMaxUsers {
			continue
		}
		var sec [12]byte
		if _, err := rand.Read(sec[:]); err != nil {
			continue
		}
		v.st.Users[a.Name] = voipUser{Number: n, Secret: base64.RawURLEncoding.EncodeToString(sec[:])}
		changed = true
	}
	for name := range v.st.Users {
		if !names[name] {
			delete(v.st.Users, name)
			changed = true
		}
	}
	if changed {
		if err := v.saveLocked(); err != nil {
			v.log.Warn("saving extensions failed", "err", err)
		}
	}
}

// checkPrefix moves this box to another prefix when a box with a smaller
// node ID publishes the same one (numbers are unique across the community
// without a registry: derived from the node ID, conflict-checked in the
// catalog, the older claim by node ID order wins).
func (v *voipService) checkPrefix() {
	recs := v.deps.records(voipType)
	taken := map[string]bool{}
	conflict := false
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range recs {
		p := r.TXT["pfx"]
		if r.OwnerID == v.deps.nodeID || p == "" {
			continue
		}
		taken[p] = true
		if p == v.st.Prefix && r.OwnerID < v.deps.nodeID {
			conflict = true
		}
	}
	if !conflict {
		return
	}
	old := v.st.Prefix
	for i := 1; i < 1000; i++ {
		if p := prefixFor(v.deps.nodeID, i); !taken[p] {
			v.st.Prefix = p
			break
		}
	}
	v.log.Warn("extension prefix taken by another box, renumbering", "old", old, "new", v.st.Prefix)
	if err := v.saveLocked(); err != nil {
		v.log.Warn("saving extensions failed", "err", err)
	}
}

// extension returns the extension of account name.
func (v *voipService) extension(name string) (ext, secret string, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	u, ok := v.st.Users[name]
	if !ok {
		return "", "", false
	}
	return fmt.Sprintf("%s%02d", v.st.Prefix, u.Number), u.Secret, true
}

// byExtension returns the account of an extension of this box.
func (v *voipService) byExtension(ext string) (name, secret string, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(ext) != 6 || ext[:4] != v.st.Prefix {
		return "", "", false
	}
	n, err := strconv.Atoi(ext[4:])
	if err != nil {
		return "", "", false
	}
	for name, u := range v.st.Users {
		if u.Number == n {
			return name, u.Secret, true
		}
	}
	return "", "", false
}

// fromBox reports whether a is the overlay address of another box's SIP
// server (from the catalog): calls it forwards were authenticated there.
func (v *voipService) fromBox(a netip.Addr) bool {
	for _, r := range v.deps.records(voipType) {
		if r.OwnerID != v.deps.nodeID && (r.OwnerIPv4 == a || r.OwnerIPv6 == a || r.Addr == a) {
			return true
		}
	}
	return false
}

// locate finds the box of an extension in the catalog: the extension's own
// entry, else the box whose prefix it has.
func (v *voipService) locate(ext string) (netip.AddrPort, bool) {
	var byPrefix netip.AddrPort
	for _, r := range v.deps.records(voipType) {
		if r.OwnerID == v.deps.nodeID {
			continue
		}
		addr := r.OwnerIPv4
		if !addr.IsValid() {
			addr = r.OwnerIPv6
		}
		if r.Addr.IsValid() {
			addr = r.Addr
		}
		if !addr.IsValid() {
			continue
		}
		ap := netip.AddrPortFrom(addr, r.Port)
		if r.TXT["ext"] == ext {
			return ap, true
		}
		if p := r.TXT["pfx"]; p != "" && len(ext) == 6 && ext[:4] == p && r.TXT["ext"] == "" {
			byPrefix = ap
		}
	}
	return byPrefix, byPrefix.IsValid()
}

// sipPort is the port SIP serves on (or is configured for).
func (v *voipService) sipPort() uint16 {
	v.mu.Lock()
	srv := v.srv
	v.mu.Unlock()
	if srv != nil {
		return srv.Addr().Port()
	}
	ap, err := netip.ParseAddrPort(cmp.Or(v.cfg.SIPAddr, DefaultSIPAddr))
	if err != nil {
		if _, p, ok := cutPort(v.cfg.SIPAddr); ok {
			return p
		}
		return 5060
	}
	return ap.Port()
}

func cutPort(hostport string) (string, uint16, bool) {
	i := len(hostport) - 1
	for i >= 0 && hostport[i] != ':' {
		i--
	}
	if i < 0 {
		return "", 0, false
	}
	p, err := strconv.ParseUint(hostport[i+1:], 10, 16)
	return hostport[:i], uint16(p), err == nil
}

// builtinServices are the box's exchange (its prefix) and one entry per
// extension, for the directory.
func (v *voipService) builtinServices() []services.Service {
	if v.cfg.Disabled {
		return nil
	}
	v.mu.Lock()
	running := v.srv != nil
	prefix := v.st.Prefix
	type ue struct {
		name string
		n    int
	}
	var users []ue
	for name, u := range v.st.Users {
		users = append(users, ue{name, u.Number})
	}
	v.mu.Unlock()
	if !running {
		return nil
	}
	port := v.sipPort()
	slices.SortFunc(users, func(a, b ue) int { return a.n - b.n })
	suffix := " (" + v.deps.nodeName + ")"
	out := []services.Service{{Instance: cutUTF8("Phone exchange", 63-len(suffix)) + suffix, Type: voipType, Port: port,
		Description: "Calls and extensions " + prefix + "xx of this box", TXT: map[string]string{"pfx": prefix}}}
	for i, u := range users {
		if i == voipMaxEntries {
			break
		}
		ext := fmt.Sprintf("%s%02d", prefix, u.n)
		out = append(out, services.Service{Instance: cutUTF8(u.name, 50) + " (" + ext + ")", Type: voipType, Port: port,
			Description: "Phone of " + u.name + " on " + v.deps.nodeName, TXT: map[string]string{"ext": ext, "name": u.name}})
	}
	return out
}

// run serves SIP until ctx ends; it retries while the port cannot be
// bound.
func (v *voipService) run(ctx context.Context) error {
	if v.cfg.Disabled {
		return nil
	}
	v.mu.Lock()
	bad := v.problem != ""
	v.mu.Unlock()
	if bad {
		<-ctx.Done()
		return nil
	}
	v.pruneRecords()
	for {
		v.syncUsers()
		srv, err := voip.New(voip.Config{
			Addr: v.cfg.SIPAddr,
			Password: func(user string) (string, bool) {
				_, secret, ok := v.byExtension(user)
				return secret, ok
			},
			Locate:       v.locate,
			Trusted:      v.fromBox,
			CallRate:     voipCallRate,
			Relay:        voip.RelayConfig{PortMin: v.cfg.RTPPortMin, PortMax: v.cfg.RTPPortMax},
			MediaTimeout: v.cfg.MediaTimeout,
			OnRecord:     v.record,
			Logger:       v.log,
			Now:          v.now,
		})
		if err != nil {
			v.setProblem(fmt.Sprintf("SIP cannot start: %v; retrying (is another SIP server using the port?)", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(voipRetry):
				continue
			}
		}
		var phones *voip.Phones
		if v.cfg.ICEAddr != "off" {
			phones, err = voip.NewPhones(voip.PhonesConfig{Server: srv, ICEAddr: v.cfg.ICEAddr, Logger: v.log})
			if err != nil {
				v.log.Warn("browser phones not available", "err", err)
			}
		}
		v.mu.Lock()
		v.srv, v.phones, v.problem = srv, phones, ""
		v.mu.Unlock()
		v.log.Info("sip listening", "addr", srv.Addr().String())
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { v.maintain(sctx) })
		if phones != nil {
			wg.Go(func() {
				if err := phones.Run(sctx); err != nil {
					v.log.Warn("browser phones stopped", "err", err)
				}
			})
		}
		err = srv.Run(sctx)
		cancel()
		wg.Wait()
		v.mu.Lock()
		v.srv, v.phones = nil, nil
		v.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		v.setProblem(fmt.Sprintf("SIP stopped: %v; restarting", err))
	}
}

// maintain numbers new accounts, checks the prefix and prunes old records.
func (v *voipService) maintain(ctx context.Context) {
	t := time.NewTicker(voipTick)
	defer t.Stop()
	lastPrune := v.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v.syncUsers()
		v.checkPrefix()
		if v.now().Sub(lastPrune) > time.Hour {
			v.pruneRecords()
			lastPrune = v.now()
		}
	}
}

func (v *voipService) setProblem(p string) {
	v.mu.Lock()
	v.problem = p
	v.mu.Unlock()
	v.log.Warn("voip problem", "problem", p)
}

// server returns the running SIP server, or nil.
func (v *voipService) server() *voip.Server {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.srv
}

// record keeps a call detail record: in memory for the API and appended
// to the records file.
func (v *voipService) record(r voip.Record) {
	v.mu.Lock()
	v.recent = append(v.recent, r)
	if len(v.recent) > voipRecent {
		v.recent = slices.Clone(v.recent[len(v.recent)-voipRecent:])
	}
	v.mu.Unlock()
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	if err := os.MkdirAll(v.dir, 0o700); err != nil {
		v.log.Warn("writing call record failed", "err", err)
		return
	}
	f, err := os.OpenFile(v.recordsPath(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		v.log.Warn("writing call record failed", "err", err)
		return
	}
	_, werr := f.Write(append(b, '\n'))
	if err := errors.Join(werr, f.Close()); err != nil {
		v.log.Warn("writing call record failed", "err", err)
	}
}

// pruneRecords drops records older than the retention.
func (v *voipService) pruneRecords() {
	b, err := os.ReadFile(v.recordsPath())
	if err != nil {
		return
	}
	cut := v.now().AddDate(0, 0, -v.cfg.RecordDays)
	var out bytes.Buffer
	dropped := 0
	for line := range bytes.Lines(b) {
		var r voip.Record
		if json.Unmarshal(line, &r) != nil || r.End.Before(cut) {
			dropped++
			continue
		}
		out.Write(line)
	}
	if dropped == 0 {
		return
	}
	if err := atomicfile.Write(v.recordsPath(), out.Bytes(), 0o600); err != nil {
		v.log.Warn("pruning call records failed", "err", err)
	}
	v.mu.Lock()
	v.recent = slices.DeleteFunc(v.recent, func(r voip.Record) bool { return r.End.Before(cut) })
	v.mu.Unlock()
}

// readRecords returns the last n records of the file.
func readRecords(path string, n int) []voip.Record {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []voip.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r voip.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
			if len(out) > 2*n {
				out = slices.Clone(out[len(out)-n:])
			}
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func (v *voipService) status(context.Context) ComponentStatus {
	if v.cfg.Disabled {
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "off"}}
	}
	v.mu.Lock()
	srv, problem, prefix := v.srv, v.problem, v.st.Prefix
	v.mu.Unlock()
	if problem != "" {
		return ComponentStatus{OK: false, Error: problem}
	}
	d := map[string]string{"prefix": prefix}
	if srv != nil {
		d["sip"] = srv.Addr().String()
		d["calls"] = strconv.Itoa(len(srv.Calls()))
		d["registrations"] = strconv.Itoa(len(srv.Registrations()))
	}
	return ComponentStatus{OK: true, Detail: d}
}
