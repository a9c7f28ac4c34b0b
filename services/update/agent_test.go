package update

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNet is a set of agents, each serving its Handler on loopback, that
// know each other through Config.Peers.
type testNet struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*testNode
	// serve wraps a node's handler; nil serves it as it is.
	serve func(n *testNode, h http.Handler) http.Handler
}

type testNode struct {
	id    string
	agent *Agent
	srv   *httptest.Server
	// announce, if set, replaces what the node announces.
	announce []Held
	// rtt is reported to the others.
	rtt time.Duration
}

// add starts an agent with cfg (Dir, Peers and NodeID filled in).
func (n *testNet) add(cfg Config) *testNode {
	n.t.Helper()
	n.mu.Lock()
	id := fmt.Sprintf("box%02d", len(n.nodes))
	n.mu.Unlock()
	cfg.Dir = filepath.Join(n.t.TempDir(), id)
	cfg.NodeID = id
	if cfg.Board == "" {
		cfg.Board = "amd64"
	}
	cfg.Peers = func() []Peer { return n.peers(id) }
	a, err := NewAgent(cfg)
	if err != nil {
		n.t.Fatalf("NewAgent: %v", err)
	}
	node := &testNode{id: id, agent: a}
	var h http.Handler = a.Handler()
	if n.serve != nil {
		h = n.serve(node, h)
	}
	node.srv = httptest.NewServer(h)
	n.t.Cleanup(node.srv.Close)
	n.mu.Lock()
	n.nodes = append(n.nodes, node)
	n.mu.Unlock()
	return node
}

func (n *testNet) peers(self string) []Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Peer
	for _, o := range n.nodes {
		if o.id == self {
			continue
		}
		holds := o.announce
		if holds == nil {
			holds = o.agent.Held()
		}
		out = append(out, Peer{ID: o.id, URL: o.srv.URL, Holds: holds, RTT: o.rtt})
	}
	return out
}

// ingestDir pushes the release in dir into a.
func ingestDir(t testing.TB, a *Agent, dir string) (*Manifest, error) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTar(&buf, dir, nil); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	return a.Ingest(&buf)
}

// assembled returns artifact name of version as a holds it.
func assembled(t testing.TB, a *Agent, version, name string) []byte {
	t.Helper()
	manifest, _, err := a.store.Release(version)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, art := range m.Artifacts {
		if art.Name == name {
			var b bytes.Buffer
			if err := a.store.WriteArtifact(m, art, &b); err != nil {
				t.Fatalf("WriteArtifact: %v", err)
			}
			return b.Bytes()
		}
	}
	t.Fatalf("no artifact %s", name)
	return nil
}

func statusOf(a *Agent, version string) ReleaseStatus {
	for _, r := range a.Status().Releases {
		if r.Version == version {
			return r
		}
	}
	return ReleaseStatus{}
}

func TestIngestAndFetchFromPeer(t *testing.T) {
	k := testKey(1)
	dir := t.TempDir()
	root := payload("root v1", 300<<10+17)
	makeRelease(t, dir, release{version: "1.0.0", root: root, boot: payload("kernel", 70<<10)}, k)

	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k)})
	b := net.add(Config{Trust: trustOf(1, k)})
	if _, err := ingestDir(t, a.agent, dir); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	ctx := t.Context()
	a.agent.step(ctx)
	if st := statusOf(a.agent, "1.0.0"); !st.Complete {
		t.Fatalf("after ingest: %+v, want complete", st)
	}
	b.agent.step(ctx)
	st := statusOf(b.agent, "1.0.0")
	if !st.Complete || st.ChunksHeld != st.Chunks {
		t.Fatalf("fetching box: %+v, want complete", st)
	}
	if got := assembled(t, b.agent, "1.0.0", RootArtifact); !bytes.Equal(got, root) {
		t.Fatalf("fetched root differs (%d bytes, want %d)", len(got), len(root))
	}
	if got, want := b.agent.Status().Downloaded, int64(len(root)+70<<10); got != want {
		t.Errorf("downloaded %d bytes, want %d", got, want)
	}
	if got := a.agent.Status().Uploaded; got != b.agent.Status().Downloaded {
		t.Errorf("a uploaded %d, b downloaded %d", got, b.agent.Status().Downloaded)
	}
}

func TestIngestRejects(t *testing.T) {
	k1, k2 := testKey(1), testKey(2)
	tests := []struct {
		name   string
		rel    release
		keys   []int
		damage func(t *testing.T, dir string)
		trust  Trust
		want   error
		stored bool // the manifest is kept (only chunks are missing)
	}{
		{name: "untrusted key", rel: release{version: "2.0.0"}, keys: []int{9}, trust: trustOf(1, k1), want: ErrUntrusted},
		{name: "below threshold", rel: release{version: "2.0.0"}, keys: []int{1}, trust: trustOf(2, k1, k2), want: ErrUntrusted},
		{name: "unsigned", rel: release{version: "2.0.0"}, trust: trustOf(1, k1), want: ErrUntrusted},
		{name: "other board", rel: release{version: "2.0.0", board: "rpi"}, keys: []int{1}, trust: trustOf(1, k1), want: ErrNotApplicable},
		{name: "older", rel: release{version: "0.9.0"}, keys: []int{1}, trust: trustOf(1, k1), want: ErrNotApplicable},
		{name: "corrupted chunk", rel: release{version: "2.0.0"}, keys: []int{1}, trust: trustOf(1, k1), want: ErrChunkMismatch, stored: true,
			damage: func(t *testing.T, dir string) {
				ents, _ := os.ReadDir(filepath.Join(dir, ChunksDir))
				p := filepath.Join(dir, ChunksDir, ents[0].Name())
				data, _ := os.ReadFile(p)
				data[0] ^= 1
				os.WriteFile(p, data, 0o644)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.rel.root = payload("root "+tt.name, 200<<10)
			m := makeRelease(t, dir, tt.rel)
			for _, i := range tt.keys {
				if _, err := SignDir(dir, EncodePrivateKey(testKey(i))); err != nil {
					t.Fatal(err)
				}
			}
			if tt.damage != nil {
				tt.damage(t, dir)
			}
			net := &testNet{t: t}
			a := net.add(Config{Trust: tt.trust, Running: "1.0.0"})
			_, err := ingestDir(t, a.agent, dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Ingest: got %v, want %v", err, tt.want)
			}
			_, _, rerr := a.agent.store.Release(m.Version)
			if stored := rerr == nil; stored != tt.stored {
				t.Errorf("release stored: %v, want %v", stored, tt.stored)
			}
			if !tt.stored {
				if ents, _ := os.ReadDir(filepath.Join(a.agent.cfg.Dir, ChunksDir)); len(ents) != 0 {
					t.Errorf("%d chunks stored from a refused release", len(ents))
				}
				if st := a.agent.Status(); len(st.Rejected) != 1 || st.Rejected[0].From != "upload" {
					t.Errorf("rejections: %+v, want one from the upload", st.Rejected)
				}
			}
			a.agent.step(t.Context())
			if st := statusOf(a.agent, m.Version); st.Complete {
				t.Errorf("refused release became complete: %+v", st)
			}
		})
	}
}

func TestIngestTruncated(t *testing.T) {
	k := testKey(1)
	dir := t.TempDir()
	makeRelease(t, dir, release{version: "2.0.0", root: payload("r", 500<<10)}, k)
	var buf bytes.Buffer
	if err := WriteTar(&buf, dir, nil); err != nil {
		t.Fatal(err)
	}
	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k)})
	_, err := a.agent.Ingest(io.LimitReader(&buf, int64(buf.Len()/2)))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("Ingest of half a stream: got %v, want ErrMalformed", err)
	}
	st := statusOf(a.agent, "2.0.0")
	if st.Complete || st.ChunksHeld == 0 || st.ChunksHeld == st.Chunks {
		t.Fatalf("after a truncated upload: %+v, want some chunks kept, not complete", st)
	}
	// The rest of the upload completes it.
	if _, err := ingestDir(t, a.agent, dir); err != nil {
		t.Fatalf("second Ingest: %v", err)
	}
	a.agent.step(t.Context())
	if st := statusOf(a.agent, "2.0.0"); !st.Complete {
		t.Fatalf("after the full upload: %+v", st)
	}
}

// TestFetchDelta checks that chunks the box holds are not fetched again:
// v2 changes one chunk's worth of v1's root.
func TestFetchDelta(t *testing.T) {
	k := testKey(1)
	const cs = 64 << 10
	root1 := payload("base", 20*cs)
	root2 := append([]byte{}, root1...)
	copy(root2[7*cs:], payload("changed", cs))
	kernel := payload("kernel", 3*cs)
	d1, d2 := t.TempDir(), t.TempDir()
	makeRelease(t, d1, release{version: "1.0.0", root: root1, boot: kernel}, k)
	makeRelease(t, d2, release{version: "1.1.0", root: root2, boot: kernel}, k)

	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k)})
	b := net.add(Config{Trust: trustOf(1, k)})
	ctx := t.Context()
	if _, err := ingestDir(t, a.agent, d1); err != nil {
		t.Fatal(err)
	}
	b.agent.step(ctx)
	before := b.agent.Status().Downloaded
	if _, err := ingestDir(t, a.agent, d2); err != nil {
		t.Fatal(err)
	}
	a.agent.step(ctx)
	b.agent.step(ctx)
	if st := statusOf(b.agent, "1.1.0"); !st.Complete {
		t.Fatalf("v2: %+v", st)
	}
	if got := b.agent.Status().Downloaded - before; got != cs {
		t.Errorf("update moved %d bytes, want %d (one chunk)", got, cs)
	}
	if got := b.agent.Status().Reused; got != int64(len(root2)+len(kernel)-cs) {
		t.Errorf("reused %d bytes, want %d", got, len(root2)+len(kernel)-cs)
	}
	if !bytes.Equal(assembled(t, b.agent, "1.1.0", RootArtifact), root2) {
		t.Error("v2 root differs")
	}
}

// TestFetchAvoidsBadPeers: one peer sends corrupted chunks, another a
// manifest signed by an untrusted key; the box refuses both and gets the
// release from the honest peer.
func TestFetchAvoidsBadPeers(t *testing.T) {
	k, stranger := testKey(1), testKey(9)
	good, forged := t.TempDir(), t.TempDir()
	root := payload("root", 400<<10)
	makeRelease(t, good, release{version: "3.0.0", root: root}, k)
	makeRelease(t, forged, release{version: "3.0.0", root: payload("evil", 400<<10)}, stranger)

	net := &testNet{t: t}
	net.serve = func(n *testNode, h http.Handler) http.Handler {
		if n.id != "box01" {
			return h
		}
		// box01 flips a byte of every chunk it serves.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 0 && rec.Code == 200 && filepath.Base(filepath.Dir(r.URL.Path)) == "chunks" {
				body[len(body)/2] ^= 0xff
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
	trust := trustOf(1, k)
	honest := net.add(Config{Trust: trust})
	corrupt := net.add(Config{Trust: trust})
	liar := net.add(Config{Trust: trustOf(1, stranger)})
	box := net.add(Config{Trust: trust})
	liar.rtt = time.Millisecond // the nearest: asked first
	honest.rtt, corrupt.rtt = 2*time.Millisecond, 2*time.Millisecond
	for _, n := range []*testNode{honest, corrupt} {
		if _, err := ingestDir(t, n.agent, good); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ingestDir(t, liar.agent, forged); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for range 3 {
		box.agent.step(ctx)
	}
	st := box.agent.Status()
	if r := statusOf(box.agent, "3.0.0"); !r.Complete {
		t.Fatalf("release: %+v", r)
	}
	if !bytes.Equal(assembled(t, box.agent, "3.0.0", RootArtifact), root) {
		t.Fatal("root differs from the honest release")
	}
	if len(st.Rejected) != 1 || st.Rejected[0].From != liar.id {
		t.Errorf("rejections: %+v, want one from %s", st.Rejected, liar.id)
	}
	if corrupt.agent.Status().Uploaded == 0 {
		t.Log("the corrupting peer was never asked (random choice)")
	}
}

// TestFetchResumes interrupts a rate-limited fetch and checks that the
// next round fetches only what is missing.
func TestFetchResumes(t *testing.T) {
	k := testKey(1)
	dir := t.TempDir()
	root := payload("root", 1<<20)
	makeRelease(t, dir, release{version: "1.0.0", root: root}, k)
	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k)})
	b := net.add(Config{Trust: trustOf(1, k), RateLimit: 2 << 20, Parallel: 2})
	if _, err := ingestDir(t, a.agent, dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Millisecond)
	b.agent.step(ctx)
	cancel()
	st := statusOf(b.agent, "1.0.0")
	if st.Complete || st.ChunksHeld == 0 {
		t.Fatalf("after the interruption: %+v, want some chunks", st)
	}
	b.agent.step(t.Context())
	if st := statusOf(b.agent, "1.0.0"); !st.Complete {
		t.Fatalf("after resuming: %+v", st)
	}
	if got := b.agent.Status().Downloaded; got != int64(len(root)) {
		t.Errorf("downloaded %d bytes in all, want %d", got, len(root))
	}
}

func TestRateLimit(t *testing.T) {
	l := newRateLimiter(4 << 20)
	start := time.Now()
	for range 32 {
		if err := l.wait(t.Context(), 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	// 2 MiB at 4 MiB/s, with 50 ms of burst: at least 450 ms.
	if el := time.Since(start); el < 440*time.Millisecond || el > 2*time.Second {
		t.Errorf("2 MiB at 4 MiB/s took %v, want about 500 ms", el)
	}
}

// TestRollout: a release with a spread is applied at the box's moment
// within it, not before, and once.
func TestRollout(t *testing.T) {
	k := testKey(1)
	dir := t.TempDir()
	makeRelease(t, dir, release{version: "1.0.0", root: payload("r", 1000), spread: 24 * time.Hour}, k)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var applied []string
	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k),
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		Apply: func(ctx context.Context, m *Manifest, s *Store) error {
			applied = append(applied, m.Version)
			return nil
		}})
	if _, err := ingestDir(t, a.agent, dir); err != nil {
		t.Fatal(err)
	}
	a.agent.step(t.Context())
	st := statusOf(a.agent, "1.0.0")
	if st.RolloutAt.Before(now) || st.RolloutAt.After(now.Add(24*time.Hour)) {
		t.Fatalf("rollout at %v, want within a day of %v", st.RolloutAt, now)
	}
	if st.RolloutAt.Sub(now) < time.Minute {
		t.Logf("rollout moment is right at the start (%v)", st.RolloutAt)
	}
	if len(applied) != 0 && st.RolloutAt.After(now) {
		t.Fatalf("applied before the moment")
	}
	mu.Lock()
	now = st.RolloutAt.Add(time.Second)
	mu.Unlock()
	a.agent.step(t.Context())
	a.agent.step(t.Context())
	if len(applied) != 1 {
		t.Fatalf("applied %v, want once", applied)
	}
	if got := statusOf(a.agent, "1.0.0"); got.Result != "applied" {
		t.Errorf("result %q", got.Result)
	}
	// The moment survives a restart.
	b, err := NewAgent(a.agent.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := statusOf(b, "1.0.0"); !got.RolloutAt.Equal(st.RolloutAt) || !got.Complete {
		t.Errorf("after restart: %+v, want rollout %v and complete", got, st.RolloutAt)
	}
}

// TestReuseLocal: chunks of the running root slot (here a file, the root
// followed by the rest of the partition) are taken from it, not fetched.
func TestReuseLocal(t *testing.T) {
	k := testKey(1)
	const cs = 64 << 10
	running := payload("running", 12*cs+100)
	next := append([]byte{}, running...)
	copy(next[5*cs:], payload("new", 10))
	slot := filepath.Join(t.TempDir(), "slot")
	if err := os.WriteFile(slot, append(append([]byte{}, running...), make([]byte, 3*cs)...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(slot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	makeRelease(t, dir, release{version: "2.0.0", root: next}, k)
	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k)})
	b := net.add(Config{Trust: trustOf(1, k), Local: func(name string) io.ReaderAt {
		if name == RootArtifact {
			return f
		}
		return nil
	}})
	if _, err := ingestDir(t, a.agent, dir); err != nil {
		t.Fatal(err)
	}
	b.agent.step(t.Context())
	if st := statusOf(b.agent, "2.0.0"); !st.Complete {
		t.Fatalf("%+v", st)
	}
	st := b.agent.Status()
	if st.Downloaded != cs || st.Reused != int64(len(next)-cs) {
		t.Errorf("downloaded %d, reused %d; want %d and %d", st.Downloaded, st.Reused, cs, len(next)-cs)
	}
	if !bytes.Equal(assembled(t, b.agent, "2.0.0", RootArtifact), next) {
		t.Error("root differs")
	}
}

// TestDamagedChunkRefetched: a chunk damaged on the disk after it was
// stored is found when the release is checked as a whole, dropped, and
// fetched again.
func TestDamagedChunkRefetched(t *testing.T) {
	k := testKey(1)
	dir := t.TempDir()
	root := payload("root", 5*64<<10)
	makeRelease(t, dir, release{version: "1.0.0", root: root}, k)
	net := &testNet{t: t}
	a := net.add(Config{Trust: trustOf(1, k)})
	b := net.add(Config{Trust: trustOf(1, k)})
	if _, err := ingestDir(t, a.agent, dir); err != nil {
		t.Fatal(err)
	}
	a.agent.step(t.Context())
	// b has the manifest and every chunk, one of them damaged.
	manifest, sigs, _ := ReadReleaseDir(dir)
	m, _ := ParseManifest(manifest)
	if err := b.agent.addRelease(m, manifest, sigs); err != nil {
		t.Fatal(err)
	}
	for _, c := range m.UniqueChunks() {
		data, _ := os.ReadFile(filepath.Join(dir, ChunksDir, c.Hash))
		if err := b.agent.store.PutChunk(c.Hash, data); err != nil {
			t.Fatal(err)
		}
	}
	bad := m.Artifacts[0].Chunks[2]
	p := filepath.Join(b.agent.cfg.Dir, ChunksDir, bad)
	data, _ := os.ReadFile(p)
	data[10] ^= 1
	os.WriteFile(p, data, 0o644)

	b.agent.step(t.Context())
	if st := statusOf(b.agent, "1.0.0"); st.Complete || !strings.Contains(st.Error, "damaged") {
		t.Fatalf("with a damaged chunk: %+v", st)
	}
	b.agent.step(t.Context())
	if st := statusOf(b.agent, "1.0.0"); !st.Complete {
		t.Fatalf("after refetching: %+v", st)
	}
	if got := b.agent.Status().Downloaded; got != 64<<10 {
		t.Errorf("downloaded %d bytes, want one chunk", got)
	}
	if !bytes.Equal(assembled(t, b.agent, "1.0.0", RootArtifact), root) {
		t.Error("root differs")
	}
}

// TestRunningReleaseKept: after a box installed a release and restarted
// on it, its agent keeps the release, announces it and serves it to the
// boxes still on the old version, and does not apply it again; a box's
// older release is still dropped.
func TestRunningReleaseKept(t *testing.T) {
	k := testKey(1)
	net := &testNet{t: t}
	var applied []string
	apply := func(ctx context.Context, m *Manifest, s *Store) error {
		applied = append(applied, m.Version)
		return nil
	}
	a := net.add(Config{Trust: trustOf(1, k), Running: "1.0.0", Apply: apply})
	for _, v := range []string{"0.9.0", "2.0.0"} {
		dir := t.TempDir()
		makeRelease(t, dir, release{version: v, root: payload("root "+v, 200<<10)}, k)
		// 0.9.0 was stored while the box ran an older version.
		running := map[string]string{"0.9.0": "0.8.0", "2.0.0": "1.0.0"}[v]
		rv, err := ParseVersion(running)
		if err != nil {
			t.Fatal(err)
		}
		a.agent.cfg.Running, a.agent.running = running, rv
		if _, err := ingestDir(t, a.agent, dir); err != nil {
			t.Fatal(err)
		}
	}
	a.agent.step(t.Context())
	if fmt.Sprint(applied) != "[2.0.0]" {
		t.Fatalf("applied %v, want 2.0.0", applied)
	}
	// The box restarts on 2.0.0.
	cfg := a.agent.cfg
	cfg.Running = "2.0.0"
	restarted, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.agent = restarted
	held := restarted.Held()
	if len(held) != 1 || held[0].Version != "2.0.0" || !held[0].Complete {
		t.Fatalf("the restarted box holds %+v, want 2.0.0 complete alone", held)
	}
	restarted.step(t.Context())
	if fmt.Sprint(applied) != "[2.0.0]" {
		t.Errorf("applied %v: the running release was applied again", applied)
	}
	// A box still on 1.0.0 fetches it from the one that runs it.
	b := net.add(Config{Trust: trustOf(1, k), Running: "1.0.0"})
	b.agent.step(t.Context())
	if st := statusOf(b.agent, "2.0.0"); !st.Complete {
		t.Errorf("the other box's copy of 2.0.0: %+v, want complete", st)
	}
}
