package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/services/update"
)

// UpdateDir is the update agent's directory in the state directory: the
// trust file and the chunk store.
const UpdateDir = "update"

// updateType is the catalog service type of the update agents: TXT "run"
// (the running version), and for the newest release held "rel", "brd",
// "ch" and "have" (1 when complete).
const updateType = "_cb-update._tcp"

// updatePathPrefix is the overlay HTTP path prefix of the agent's chunks.
const updatePathPrefix = update.PathPrefix

// UpdateConfig configures updates over the mesh. The zero value runs the
// agent on the stable channel, trusting the keys of
// <state>/update/trust.json (none while it is missing: every release is
// refused), without a bandwidth cap.
type UpdateConfig struct {
	// Off turns the update agent off.
	Off bool
	// Channel is the release channel; zero means stable.
	Channel string
	// TrustFile is the trust file (see update.ParseTrust); zero means
	// trust.json in the update directory if it exists, else ImageTrustFile.
	TrustFile string
	// RateLimit caps bytes per second fetched from peers and served to
	// them, each; zero means no cap.
	RateLimit int64
	// TrialTime is how long a new version has, after its trial boot, to
	// prove itself healthy (within two thirds of it) and commit before
	// init resets the box to the previous version; zero means five
	// minutes.
	TrialTime time.Duration
}

// ImageTrustFile is the release trust file an image carries (cloudbox
// image --release-trust): the keys a box trusts while its state directory
// has no trust file of its own.
const ImageTrustFile = "/etc/cloudbox/update-trust.json"

// updateService is the update component: the agent, announced in the
// catalog and serving chunks over the overlay.
type updateService struct {
	// Immutable after openUpdate.
	cfg     UpdateConfig
	node    string // this box's name
	board   string
	version string
	agent   *update.Agent // nil when off or failed
	problem string        // why agent is nil
	log     *slog.Logger
	// root is the running root slot, whose chunks an update reuses; nil
	// in host mode. run closes it.
	root *os.File
	// changed returns a channel closed when the catalog changes (a peer
	// may announce a release).
	changed func() <-chan struct{}
	// inst installs releases (apply*.go on a box, routerinstall.go on a
	// router); nil in host mode or when the disk is not usable
	// (installProblem says why).
	inst           releaseInstaller
	installProblem string
	ov             *overlayService
	// panelAddr is the panel's listen address, for the health check of a
	// trial boot; set before run starts.
	panelAddr string
	// replaceWith stops the daemon and has it exec the binary at path (a
	// router's install); set by Run before run starts.
	replaceWith func(path string)
}

// releaseInstaller installs the releases the agent accepted: a box's into
// its other root slot (apply.go), a router's as its new cloudboxd
// (routerinstall.go). Its methods are safe for concurrent use.
type releaseInstaller interface {
	// Apply installs release m from store s and restarts into it on
	// trial (update.Config.Apply).
	Apply(ctx context.Context, m *update.Manifest, s *update.Store) error
	// Resume finishes the last install after the restart: it commits a
	// healthy trial or rolls it back. It returns when done or ctx ends.
	Resume(ctx context.Context) error
	// Status is the last install's state; nil when there was none.
	Status() *InstallStatus
	// slot is the running root partition; 0 on a router.
	slot() int
}

// openUpdate prepares the update agent; a broken trust file or store is
// reported in the status, and the daemon runs on without updates.
func openUpdate(cfg UpdateConfig, stateDir, nodeID, nodeName, board, version string, ov *overlayService, logger *slog.Logger) *updateService {
	u := &updateService{cfg: cfg, node: nodeName, board: board, version: version, log: logger.With("component", "update"),
		changed: ov.changed.Wait}
	if cfg.Off {
		u.problem = "updates are turned off (--update off)"
		return u
	}
	dir := filepath.Join(stateDir, UpdateDir)
	trustFile := cfg.TrustFile
	if trustFile == "" {
		trustFile = filepath.Join(dir, "trust.json")
		if _, err := os.Stat(trustFile); errors.Is(err, fs.ErrNotExist) {
			trustFile = ImageTrustFile
		}
	}
	var trust update.Trust
	data, err := os.ReadFile(trustFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		u.problem = fmt.Sprintf("cannot read the update trust file: %v", err)
		return u
	default:
		if trust, err = update.ParseTrust(data); err != nil {
			u.problem = fmt.Sprintf("%s: %v; fix it with `cloudbox release trust`", trustFile, err)
			return u
		}
	}
	if dev := runningRootDevice(); dev != "" {
		if u.root, err = os.Open(dev); err != nil {
			u.log.Warn("cannot read the running root slot; updates fetch all of it", "device", dev, "error", err)
		}
	}
	u.ov = ov
	var apply func(context.Context, *update.Manifest, *update.Store) error
	replace := func(path string) { u.replaceWith(path) }
	if u.inst, u.installProblem = openInstaller(cfg, dir, board, version, u.healthy, replace, u.log); u.inst != nil {
		apply = u.inst.Apply
	}
	port := ov.cfg.ListenPort
	u.agent, err = update.NewAgent(update.Config{
		Apply: apply,
		Local: u.local,
		Dir:   filepath.Join(dir, "store"), Board: board, Channel: cfg.Channel, Running: runningVersion(version),
		Trust: trust, NodeID: nodeID, RateLimit: cfg.RateLimit, Logger: u.log,
		Peers: func() []update.Peer { return updatePeers(ov, nodeID, port) },
	})
	if err != nil {
		u.agent, u.problem = nil, fmt.Sprintf("cannot open the update store: %v", err)
	}
	return u
}

// runningVersion maps a build's version to a release version: a build
// without a release version ("dev", a git description) counts as dev.
func runningVersion(v string) string {
	if _, err := update.ParseVersion(v); err != nil {
		return "dev"
	}
	return v
}

// updatePeers lists the catalog's update agents with their RTT.
func updatePeers(ov *overlayService, self string, port uint16) []update.Peer {
	cat := ov.catalog.current()
	if cat == nil {
		return nil
	}
	rtts := ov.rtts()
	var out []update.Peer
	for _, rec := range cat.Services(services.Filter{Type: updateType}) {
		if rec.OwnerID == self || !rec.OwnerIPv6.IsValid() {
			continue
		}
		p := update.Peer{ID: rec.OwnerID, URL: "http://" + netip.AddrPortFrom(rec.OwnerIPv6, rec.Port).String(), RTT: rtts[rec.OwnerID]}
		if v := rec.TXT["rel"]; v != "" {
			p.Holds = []update.Held{{Version: v, Board: rec.TXT["brd"], Channel: rec.TXT["ch"], Complete: rec.TXT["have"] == "1"}}
		}
		out = append(out, p)
	}
	return out
}

// builtinServices returns the agent's catalog entry: the running version,
// and the newest release it holds.
func (u *updateService) builtinServices(port uint16) []services.Service {
	if u.agent == nil {
		return nil
	}
	txt := map[string]string{"run": u.version, "brd": u.board}
	if held := u.agent.Held(); len(held) > 0 {
		h := held[0]
		txt["rel"], txt["ch"], txt["have"] = h.Version, h.Channel, "0"
		if h.Complete {
			txt["have"] = "1"
		}
	}
	suffix := " (" + u.node + ")"
	return []services.Service{{Instance: cutUTF8("updates", 63-len(suffix)) + suffix, Type: updateType, Port: port,
		Description: "Cloudbox releases: this box mirrors them for the community", TXT: txt}}
}

// handler serves the agent's chunks to peers over the overlay.
func (u *updateService) handler() http.Handler {
	if u.agent == nil {
		return http.NotFoundHandler()
	}
	return u.agent.Handler()
}

// local returns the running root slot for the root artifact.
func (u *updateService) local(name string) io.ReaderAt {
	if name != update.RootArtifact || u.root == nil {
		return nil
	}
	return u.root
}

// run runs the agent until ctx is done.
func (u *updateService) run(ctx context.Context) error {
	if u.root != nil {
		defer u.root.Close()
	}
	if u.agent == nil {
		return nil
	}
	// A catalog change may be a peer announcing a release: look at once.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if u.inst != nil {
		wg.Go(func() {
			if err := u.inst.Resume(ctx); err != nil && ctx.Err() == nil {
				u.log.Warn("finishing the last install failed", "error", err)
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-u.changed():
				u.agent.Notify()
			}
		}
	})
	return u.agent.Run(ctx)
}

func (u *updateService) status(context.Context) ComponentStatus {
	if u.agent == nil {
		return ComponentStatus{OK: u.cfg.Off, Error: u.problem}
	}
	st := u.agent.Status()
	d := map[string]string{"running": st.Running, "channel": st.Channel, "trusted_keys": strconv.Itoa(st.TrustKeys)}
	if len(st.Releases) > 0 {
		d["newest"] = st.Releases[0].Version
	}
	if u.inst != nil {
		if is := u.inst.Status(); is != nil {
			d["install"] = is.Version + " " + is.Phase
		}
	}
	if st.TrustKeys == 0 {
		return ComponentStatus{OK: false, Error: "no release keys are trusted, so no update is accepted; build the image with `cloudbox image --release-trust FILE`, or write the community's keys (`cloudbox release trust`) into " + filepath.Join(UpdateDir, "trust.json") + " of the state directory", Detail: d}
	}
	return ComponentStatus{OK: true, Detail: d}
}

// UpdateInfo is the body of GET /api/v1/update.
type UpdateInfo struct {
	Running string `json:"running"`
	Board   string `json:"board"`
	// Agent is nil when the agent does not run; Problem says why.
	Agent   *update.Status `json:"agent,omitempty"`
	Problem string         `json:"problem,omitempty"`
	// Install is the last install (nil when there was none); Slot is
	// the running root partition (0 in host mode); InstallProblem says
	// why releases are not installed on this box.
	Install        *InstallStatus `json:"install,omitempty"`
	Slot           int            `json:"slot,omitempty"`
	InstallProblem string         `json:"install_problem,omitempty"`
	// Community lists the version each box of the community runs, as its
	// catalog entry says.
	Community []BoxVersion `json:"community"`
}

// BoxVersion is one box's running version and newest release held.
type BoxVersion struct {
	Box     string `json:"box"`
	BoxID   string `json:"box_id"`
	Running string `json:"running"`
	Holds   string `json:"holds,omitempty"`
	Self    bool   `json:"self,omitempty"`
}

func (u *updateService) view(cat catalogSource, selfID string) UpdateInfo {
	v := UpdateInfo{Running: u.version, Board: u.board, Problem: u.problem, Community: []BoxVersion{}}
	if u.agent != nil {
		st := u.agent.Status()
		v.Agent = &st
	}
	v.InstallProblem = u.installProblem
	if u.inst != nil {
		v.Install, v.Slot = u.inst.Status(), u.inst.slot()
	}
	if cat != nil {
		if c := cat.current(); c != nil {
			for _, rec := range c.Services(services.Filter{Type: updateType}) {
				b := BoxVersion{Box: rec.OwnerName, BoxID: rec.OwnerID, Running: rec.TXT["run"], Holds: rec.TXT["rel"], Self: rec.OwnerID == selfID}
				if rec.TXT["have"] == "0" {
					b.Holds += " (fetching)"
				}
				v.Community = append(v.Community, b)
			}
		}
	}
	return v
}

// maxReleaseUpload bounds an uploaded release stream.
const maxReleaseUpload = 2 << 30

// releaseUploadTime is how long an upload may take.
const releaseUploadTime = 30 * time.Minute
