package update

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/internal/plainhttp"
)

// Defaults of Config.
const (
	DefaultChannel      = "stable"
	DefaultParallel     = 4
	DefaultMaxUploads   = 4
	DefaultPollInterval = 10 * time.Second
)

// Doer sends HTTP requests; *http.Client implements it.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Config configures an Agent. Fields are read once by NewAgent.
type Config struct {
	// Dir is the chunk store's directory; required. It holds only what
	// the agent writes.
	Dir string
	// Board is the board this box runs; required.
	Board string
	// Channel is the release channel the box follows; zero means
	// DefaultChannel.
	Channel string
	// Running is the version the box runs; zero means "dev" (older than
	// every release).
	Running string
	// Trust says which release keys are trusted; the zero value trusts
	// none, so every release is refused (the agent still runs).
	Trust Trust
	// NodeID identifies the box; it places the box's moment within a
	// release's rollout spread. Zero means all boxes pick the same moment.
	NodeID string
	// Peers returns the other boxes that run an agent and what they hold,
	// in any order; it is called from several goroutines. Nil means none
	// (releases then enter only through Ingest).
	Peers func() []Peer
	// Local returns the running system's copy of an artifact of that name
	// (the active root slot for RootArtifact), or nil when it has none: a
	// missing chunk found there at its place is taken instead of fetched,
	// so an update that changes little moves little. Nil means none.
	Local func(name string) io.ReaderAt
	// Client fetches from peers (an *http.Client does); nil means a client
	// without timeout (each request is bounded by the agent): net/http's,
	// or internal/plainhttp's in the router profile.
	Client Doer
	// Parallel is how many chunks are fetched at once; zero means
	// DefaultParallel.
	Parallel int
	// MaxUploads is how many chunk requests of peers are served at once;
	// more get 503 and ask another peer. Zero means DefaultMaxUploads.
	MaxUploads int
	// RateLimit caps the bytes per second fetched from peers, and
	// separately those served to peers; zero means no cap.
	RateLimit int64
	// PollInterval is how often the agent looks at the peers' releases
	// without being notified; zero means DefaultPollInterval.
	PollInterval time.Duration
	// Apply installs a complete, verified release when its rollout moment
	// has come (the appliance writes the inactive slot and reboots). It is
	// called from Run's goroutine, at most once per release and start.
	// Nil means releases are only held and served.
	Apply func(ctx context.Context, m *Manifest, s *Store) error
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Now is the clock for rollout moments; nil means time.Now.
	Now func() time.Time
}

// Peer is another box's agent as Config.Peers reports it.
type Peer struct {
	// ID identifies the peer (its node ID).
	ID string
	// URL is the base of its update endpoints: "http://[addr]:port"; the
	// agent appends Path.
	URL string
	// RTT is the round-trip time to it; zero means unknown. Nearer peers
	// are asked first.
	RTT time.Duration
	// Holds are the releases it announces.
	Holds []Held
}

// Held is a release an agent holds, as it announces it.
type Held struct {
	Version, Board, Channel string
	// Complete is false while it still fetches chunks (it serves those it
	// has).
	Complete bool
}

// Agent fetches, holds, serves and applies releases; see the package
// documentation. Its methods are safe for concurrent use.
type Agent struct {
	// Immutable after NewAgent.
	cfg     Config
	store   *Store
	running Version
	log     *slog.Logger
	client  Doer
	down    *rateLimiter
	up      *rateLimiter
	uploads chan struct{} // semaphore of chunk uploads
	notify  chan struct{}

	// Counters.
	downloaded, uploaded, reused atomic.Int64

	// servedMu guards served: recent uploads by chunk.
	servedMu sync.Mutex
	served   map[string]served

	// mu guards the following.
	mu       sync.Mutex
	releases map[string]*releaseState // by version, what the store holds
	rejected map[string]Rejection     // by version+"\x00"+peer
	applied  map[string]bool          // Apply called this run
}

// releaseState is the persisted progress of one stored release.
type releaseState struct {
	m *Manifest
	// Persisted in releases/<version>/state.json.
	Complete  bool      `json:"complete"`
	RolloutAt time.Time `json:"rollout_at,omitzero"`
	Result    string    `json:"result,omitempty"`
	Error     string    `json:"error,omitempty"`
	// Not persisted.
	have, total int
	fetchErr    string
}

// maxRejections bounds the refusals remembered.
const maxRejections = 256

// Rejection records a release refused from a peer or an upload.
type Rejection struct {
	Version string `json:"version"`
	From    string `json:"from"`
	Reason  string `json:"reason"`
}

// NewAgent opens the store in cfg.Dir and loads the releases it holds.
func NewAgent(cfg Config) (*Agent, error) {
	if cfg.Dir == "" || cfg.Board == "" {
		return nil, errors.New("update agent needs a directory and a board")
	}
	cfg.Channel = cmp.Or(cfg.Channel, DefaultChannel)
	cfg.Parallel = cmp.Or(cfg.Parallel, DefaultParallel)
	cfg.MaxUploads = cmp.Or(cfg.MaxUploads, DefaultMaxUploads)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = plainhttp.NewClient(plainhttp.ClientConfig{})
	}
	running, err := ParseVersion(cfg.Running)
	if err != nil {
		return nil, fmt.Errorf("running version: %w", err)
	}
	st, err := OpenStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, store: st, running: running, log: cfg.Logger, client: cfg.Client,
		down: newRateLimiter(cfg.RateLimit), up: newRateLimiter(cfg.RateLimit),
		uploads: make(chan struct{}, cfg.MaxUploads), notify: make(chan struct{}, 1),
		served: map[string]served{}, releases: map[string]*releaseState{}, rejected: map[string]Rejection{}, applied: map[string]bool{},
	}
	for _, v := range st.Versions() {
		manifest, sigs, err := st.Release(v)
		if err != nil {
			return nil, err
		}
		m, err := a.accept(manifest, sigs)
		if errors.Is(err, ErrNotApplicable) && a.isRunning(v) {
			// The release this box runs since it installed it: kept,
			// so that the box serves it to the others.
			if vm, verr := Verify(a.cfg.Trust, manifest, sigs); verr == nil && vm.Board == cfg.Board && vm.Channel == cfg.Channel {
				m, err = vm, nil
			}
		}
		if err != nil {
			// Trust or version changed since it was stored.
			a.log.Info("dropping stored release", "version", v, "reason", err.Error())
			if err := st.RemoveRelease(v); err != nil {
				return nil, err
			}
			continue
		}
		rs := &releaseState{m: m}
		if data, err := os.ReadFile(a.statePath(v)); err == nil {
			if err := json.Unmarshal(data, rs); err != nil {
				a.log.Warn("ignoring damaged release state", "version", v, "error", err)
			}
		}
		rs.total = len(m.UniqueChunks())
		rs.have = rs.total - len(st.Missing(m))
		a.releases[v] = rs
	}
	return a, nil
}

// isRunning says whether version is the one the box runs.
func (a *Agent) isRunning(version string) bool {
	v, err := ParseVersion(version)
	return err == nil && !v.IsDev() && v.Compare(a.running) == 0
}

// Store returns the agent's chunk store.
func (a *Agent) Store() *Store { return a.store }

func (a *Agent) statePath(version string) string {
	return filepath.Join(a.store.releaseDir(version), "state.json")
}

// saveLocked persists rs; a.mu is held.
func (a *Agent) saveLocked(rs *releaseState) error {
	data, err := json.Marshal(rs)
	if err != nil {
		return fmt.Errorf("encoding release state: %w", err)
	}
	if err := atomicfile.Write(a.statePath(rs.m.Version), data, 0o644); err != nil {
		return fmt.Errorf("saving release state: %w", err)
	}
	return nil
}

// accept verifies a release for this box.
func (a *Agent) accept(manifest, sigs []byte) (*Manifest, error) {
	m, err := Verify(a.cfg.Trust, manifest, sigs)
	if err != nil {
		return nil, err
	}
	if err := CheckApplicable(m, a.cfg.Board, a.cfg.Channel, a.running); err != nil {
		return nil, err
	}
	return m, nil
}

// Notify makes Run look at the peers' releases now.
func (a *Agent) Notify() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// Ingest reads a release stream (see WriteTar) from an upload: it verifies
// the manifest and signatures before reading any chunk, stores each chunk
// after checking its hash, and returns the manifest. A release that is not
// trusted or not for this box is refused and nothing is stored. A stream
// that ends early keeps the chunks received; the rest are fetched from peers
// and the error wraps ErrIncomplete.
func (a *Agent) Ingest(r io.Reader) (*Manifest, error) {
	var version string
	m, err := readTar(r, func(manifest, sigs []byte) (*Manifest, error) {
		m, err := a.accept(manifest, sigs)
		if err != nil {
			a.reject(Rejection{From: "upload", Reason: err.Error()}, manifest)
			return nil, err
		}
		if err := a.addRelease(m, manifest, sigs); err != nil {
			return nil, err
		}
		version = m.Version
		return m, nil
	}, func(hash string, data []byte) error {
		if a.store.HasChunk(hash) {
			return nil
		}
		if err := a.store.PutChunk(hash, data); err != nil {
			return err
		}
		a.countChunk(version)
		return nil
	})
	if m != nil {
		a.Notify()
	}
	if err != nil {
		return m, fmt.Errorf("receiving release: %w", err)
	}
	if missing := a.store.Missing(m); len(missing) > 0 {
		return m, fmt.Errorf("%w: %d of %d chunks missing; the box fetches them from its peers", ErrIncomplete, len(missing), len(m.UniqueChunks()))
	}
	return m, nil
}

// countChunk records one more chunk of version held.
func (a *Agent) countChunk(version string) {
	a.mu.Lock()
	if rs := a.releases[version]; rs != nil {
		rs.have++
	}
	a.mu.Unlock()
}

// reject records why a release was refused.
func (a *Agent) reject(r Rejection, manifest []byte) {
	if r.Version == "" {
		var probe struct{ Version string }
		json.Unmarshal(manifest, &probe)
		r.Version = probe.Version
	}
	a.log.Info("release rejected", "version", r.Version, "from", r.From, "reason", r.Reason)
	a.mu.Lock()
	if len(a.rejected) >= maxRejections {
		clear(a.rejected) // forgetting lets a peer be asked again; no harm
	}
	a.rejected[r.Version+"\x00"+r.From] = r
	a.mu.Unlock()
}

// addRelease stores a verified release and starts tracking it.
func (a *Agent) addRelease(m *Manifest, manifest, sigs []byte) error {
	a.mu.Lock()
	_, known := a.releases[m.Version]
	a.mu.Unlock()
	if known {
		return nil
	}
	if err := a.store.PutRelease(m, manifest, sigs); err != nil {
		return err
	}
	rs := &releaseState{m: m, total: len(m.UniqueChunks())}
	missing := a.store.Missing(m)
	rs.have = rs.total - len(missing)
	var need int64
	for _, c := range missing {
		need += c.Len
	}
	var all int64
	for _, c := range m.UniqueChunks() {
		all += c.Len
	}
	a.reused.Add(all - need)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, known := a.releases[m.Version]; !known {
		a.releases[m.Version] = rs
	}
	a.log.Info("release accepted", "version", m.Version, "chunks", rs.total, "held", rs.have)
	return a.saveLocked(a.releases[m.Version])
}

// Held returns what the agent announces: every release it holds, newest
// first.
func (a *Agent) Held() []Held {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Held
	for _, rs := range a.releases {
		out = append(out, Held{Version: rs.m.Version, Board: rs.m.Board, Channel: rs.m.Channel, Complete: rs.Complete})
	}
	sort.Slice(out, func(i, j int) bool { return compareVersionStrings(out[j].Version, out[i].Version) < 0 })
	return out
}

// Run fetches, completes and applies releases until ctx is done; it returns
// nil then. The agent's Handler serves peers independently of Run.
func (a *Agent) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.PollInterval)
	defer t.Stop()
	for {
		a.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.notify:
		}
	}
}

// step does one round: learn new releases from peers, fetch the newest
// incomplete one, then apply the newest complete one when its moment has
// come.
func (a *Agent) step(ctx context.Context) {
	var peers []Peer
	if a.cfg.Peers != nil {
		peers = a.cfg.Peers()
	}
	a.discover(ctx, peers)
	target := a.target()
	if target == nil || ctx.Err() != nil {
		return
	}
	if !a.isComplete(target) {
		err := a.fetch(ctx, target)
		a.mu.Lock()
		rs := a.releases[target.Version]
		if err != nil {
			rs.fetchErr = err.Error()
			a.mu.Unlock()
			if ctx.Err() == nil {
				a.log.Info("release incomplete", "version", target.Version, "reason", err.Error())
			}
			return
		}
		// Every chunk is here: check the artifacts as a whole before
		// calling the release complete.
		a.mu.Unlock()
		for _, art := range target.Artifacts {
			if err := a.store.WriteArtifact(target, art, io.Discard); err != nil {
				a.mu.Lock()
				rs.fetchErr = err.Error()
				a.mu.Unlock()
				a.log.Warn("release damaged", "version", target.Version, "error", err)
				return
			}
		}
		a.mu.Lock()
		rs.Complete, rs.fetchErr = true, ""
		if err := a.saveLocked(rs); err != nil {
			a.log.Warn("saving release state failed", "error", err)
		}
		a.mu.Unlock()
		a.log.Info("release complete", "version", target.Version)
		a.prune(target)
	}
	a.maybeApply(ctx, target)
}

// target returns the newest release the store holds that applies to the
// running version.
func (a *Agent) target() *Manifest {
	a.mu.Lock()
	defer a.mu.Unlock()
	var best *Manifest
	for _, rs := range a.releases {
		if CheckApplicable(rs.m, a.cfg.Board, a.cfg.Channel, a.running) != nil {
			continue
		}
		if best == nil || compareVersionStrings(rs.m.Version, best.Version) > 0 {
			best = rs.m
		}
	}
	return best
}

func (a *Agent) isComplete(m *Manifest) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.releases[m.Version].Complete
}

// discover fetches the manifest of the newest release the peers announce
// for this board and channel, if it is newer than what the box runs and
// holds, from the nearest peer that has it and that did not send a refused
// one before.
func (a *Agent) discover(ctx context.Context, peers []Peer) {
	newest := a.running
	a.mu.Lock()
	for v := range a.releases {
		if pv, _ := ParseVersion(v); pv.Compare(newest) > 0 {
			newest = pv
		}
	}
	a.mu.Unlock()
	type offer struct {
		version Version
		peer    Peer
	}
	var offers []offer
	for _, p := range peers {
		for _, h := range p.Holds {
			v, err := ParseVersion(h.Version)
			if err != nil || h.Board != a.cfg.Board || h.Channel != a.cfg.Channel || v.Compare(newest) <= 0 {
				continue
			}
			a.mu.Lock()
			_, refused := a.rejected[h.Version+"\x00"+p.ID]
			a.mu.Unlock()
			if !refused {
				offers = append(offers, offer{v, p})
			}
		}
	}
	// Newest version first, then nearest peer.
	sort.SliceStable(offers, func(i, j int) bool {
		x, y := offers[i], offers[j]
		return cmp.Or(y.version.Compare(x.version), cmp.Compare(x.peer.RTT, y.peer.RTT)) < 0
	})
	for _, o := range offers {
		if ctx.Err() != nil {
			return
		}
		manifest, err := a.get(ctx, o.peer.URL+releasePath(o.version.String(), ManifestFile), MaxManifestSize)
		if err != nil {
			a.log.Debug("fetching manifest failed", "peer", o.peer.ID, "error", err)
			continue
		}
		sigs, err := a.get(ctx, o.peer.URL+releasePath(o.version.String(), SignaturesFile), 64<<10)
		if err != nil {
			continue
		}
		m, err := a.accept(manifest, sigs)
		if err == nil && m.Version != o.version.String() {
			err = fmt.Errorf("%w: peer announced %s but sent %s", ErrMalformed, o.version, m.Version)
		}
		if err != nil {
			a.reject(Rejection{Version: o.version.String(), From: o.peer.ID, Reason: err.Error()}, nil)
			continue
		}
		if err := a.addRelease(m, manifest, sigs); err != nil {
			a.log.Warn("storing release failed", "version", m.Version, "error", err)
		}
		return
	}
}

// get fetches a small document from a peer.
func (a *Agent) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", url, limit)
	}
	return data, nil
}

// rolloutAt returns the moment within the spread at which this box applies
// m, counted from first (when the box had the whole release): a fraction of
// the spread from a hash of the node and version, so boxes spread evenly
// and each keeps its moment across restarts.
func (a *Agent) rolloutAt(m *Manifest, first time.Time) time.Time {
	sum := sha256.Sum256([]byte(a.cfg.NodeID + "\x00" + m.Version))
	frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53)
	return first.Add(time.Duration(frac * float64(m.Spread())))
}

// maybeApply calls Config.Apply for the complete release m once its
// rollout moment has come.
func (a *Agent) maybeApply(ctx context.Context, m *Manifest) {
	a.mu.Lock()
	rs := a.releases[m.Version]
	if rs.RolloutAt.IsZero() {
		rs.RolloutAt = a.rolloutAt(m, a.cfg.Now())
		if err := a.saveLocked(rs); err != nil {
			a.log.Warn("saving release state failed", "error", err)
		}
		a.log.Info("rollout scheduled", "version", m.Version, "at", rs.RolloutAt)
	}
	due := !a.cfg.Now().Before(rs.RolloutAt)
	if a.cfg.Apply == nil || !due || a.applied[m.Version] || a.isRunning(m.Version) {
		a.mu.Unlock()
		return
	}
	a.applied[m.Version] = true
	a.mu.Unlock()
	a.log.Info("applying release", "version", m.Version)
	err := a.cfg.Apply(ctx, m, a.store)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		rs.Result, rs.Error = "failed", err.Error()
		a.log.Warn("applying release failed", "version", m.Version, "error", err)
	} else {
		rs.Result, rs.Error = "applied", ""
	}
	if err := a.saveLocked(rs); err != nil {
		a.log.Warn("saving release state failed", "error", err)
	}
}

// prune keeps the releases newest and the one before it (the running
// version's chunks make the next delta small) and removes the rest and
// their chunks.
func (a *Agent) prune(newest *Manifest) {
	a.mu.Lock()
	var versions []string
	for v := range a.releases {
		versions = append(versions, v)
	}
	slices.SortFunc(versions, compareVersionStrings)
	var keep []*Manifest
	var drop []string
	for i, v := range versions {
		if i >= len(versions)-2 || compareVersionStrings(v, newest.Version) > 0 {
			keep = append(keep, a.releases[v].m)
		} else {
			drop = append(drop, v)
			delete(a.releases, v)
		}
	}
	a.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	var errs []error
	for _, v := range drop {
		errs = append(errs, a.store.RemoveRelease(v))
	}
	errs = append(errs, a.store.Prune(keep))
	if err := errors.Join(errs...); err != nil {
		a.log.Warn("pruning old releases failed", "error", err)
	}
}

// Status is what the agent reports for the API and panel.
type Status struct {
	Running    string          `json:"running"`
	Board      string          `json:"board"`
	Channel    string          `json:"channel"`
	TrustKeys  int             `json:"trusted_keys"`
	Threshold  int             `json:"threshold"`
	Releases   []ReleaseStatus `json:"releases"`
	Rejected   []Rejection     `json:"rejected"`
	Downloaded int64           `json:"downloaded_bytes"`
	Uploaded   int64           `json:"uploaded_bytes"`
	Reused     int64           `json:"reused_bytes"`
}

// ReleaseStatus is one held release.
type ReleaseStatus struct {
	Version    string    `json:"version"`
	Channel    string    `json:"channel"`
	Date       time.Time `json:"date"`
	Size       int64     `json:"size"`
	Chunks     int       `json:"chunks"`
	ChunksHeld int       `json:"chunks_held"`
	Complete   bool      `json:"complete"`
	RolloutAt  time.Time `json:"rollout_at,omitzero"`
	Result     string    `json:"result,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Status returns the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{Running: a.running.String(), Board: a.cfg.Board, Channel: a.cfg.Channel,
		TrustKeys: len(a.cfg.Trust.Keys), Threshold: a.cfg.Trust.threshold(),
		Releases: []ReleaseStatus{}, Rejected: []Rejection{},
		Downloaded: a.downloaded.Load(), Uploaded: a.uploaded.Load(), Reused: a.reused.Load()}
	for _, rs := range a.releases {
		s.Releases = append(s.Releases, ReleaseStatus{Version: rs.m.Version, Channel: rs.m.Channel, Date: rs.m.Date,
			Size: rs.m.Size(), Chunks: rs.total, ChunksHeld: min(rs.have, rs.total), Complete: rs.Complete,
			RolloutAt: rs.RolloutAt, Result: rs.Result, Error: cmp.Or(rs.Error, rs.fetchErr)})
	}
	sort.Slice(s.Releases, func(i, j int) bool { return compareVersionStrings(s.Releases[j].Version, s.Releases[i].Version) < 0 })
	for _, r := range a.rejected {
		s.Rejected = append(s.Rejected, r)
	}
	sort.Slice(s.Rejected, func(i, j int) bool {
		x, y := s.Rejected[i], s.Rejected[j]
		return cmp.Or(compareVersionStrings(y.Version, x.Version), cmp.Compare(x.From, y.From)) < 0
	})
	return s
}
