// Package updatetest runs many update agents in one process, each serving
// its chunks on a loopback HTTP server, for scale tests and the update
// benchmark. It is not a fake: the agents are real and fetch over TCP.
package updatetest

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/services/update"
)

// Network is a set of agents that know each other through Config.Peers.
// Close stops them.
type Network struct {
	dir string

	mu    sync.Mutex
	nodes []*Node

	wg     sync.WaitGroup
	cancel context.CancelFunc
	ctx    context.Context
}

// Node is one agent of a Network.
type Node struct {
	ID    string
	Agent *update.Agent
	srv   *httptest.Server
}

// New returns an empty network whose agents keep their stores under dir.
func New(dir string) *Network {
	ctx, cancel := context.WithCancel(context.Background())
	return &Network{dir: dir, ctx: ctx, cancel: cancel}
}

// Add starts an agent with cfg; Dir, NodeID and Peers are filled in, Board
// defaults to "amd64" and PollInterval to 200 ms.
func (n *Network) Add(cfg update.Config) (*Node, error) {
	n.mu.Lock()
	id := fmt.Sprintf("box%03d", len(n.nodes))
	n.mu.Unlock()
	cfg.Dir = filepath.Join(n.dir, id)
	cfg.NodeID = id
	if cfg.Board == "" {
		cfg.Board = "amd64"
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	cfg.Peers = func() []update.Peer { return n.peers(id) }
	a, err := update.NewAgent(cfg)
	if err != nil {
		return nil, err
	}
	node := &Node{ID: id, Agent: a, srv: httptest.NewServer(a.Handler())}
	n.mu.Lock()
	n.nodes = append(n.nodes, node)
	n.mu.Unlock()
	n.wg.Go(func() { a.Run(n.ctx) })
	return node, nil
}

func (n *Network) peers(self string) []update.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]update.Peer, 0, len(n.nodes))
	for _, o := range n.nodes {
		if o.ID != self {
			out = append(out, update.Peer{ID: o.ID, URL: o.srv.URL, Holds: o.Agent.Held()})
		}
	}
	return out
}

// Nodes returns the network's nodes in the order they were added.
func (n *Network) Nodes() []*Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Node(nil), n.nodes...)
}

// Inject uploads the release in dir into node, as `cloudbox update push`
// does.
func (n *Network) Inject(node *Node, dir string) error {
	var buf bytes.Buffer
	if err := update.WriteTar(&buf, dir, nil); err != nil {
		return err
	}
	_, err := node.Agent.Ingest(&buf)
	return err
}

// WaitComplete waits until every node holds version completely, or ctx is
// done; the error names how many lack it.
func (n *Network) WaitComplete(ctx context.Context, version string) error {
	for {
		missing := 0
		for _, node := range n.Nodes() {
			if !holdsComplete(node.Agent, version) {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d boxes lack release %s: %w", missing, len(n.Nodes()), version, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func holdsComplete(a *update.Agent, version string) bool {
	for _, h := range a.Held() {
		if h.Version == version && h.Complete {
			return true
		}
	}
	return false
}

// Traffic returns the bytes each node uploaded and downloaded, in node
// order.
func (n *Network) Traffic() (up, down []int64) {
	for _, node := range n.Nodes() {
		st := node.Agent.Status()
		up = append(up, st.Uploaded)
		down = append(down, st.Downloaded)
	}
	return up, down
}

// Close stops every agent and server and waits for them.
func (n *Network) Close() {
	n.cancel()
	n.wg.Wait()
	for _, node := range n.Nodes() {
		node.srv.Close()
	}
}
