package update

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// Fetch tuning.
const (
	// chunkTimeout bounds one chunk request.
	chunkTimeout = 2 * time.Minute
	// nearest is how many of the nearest suitable holders a chunk is asked
	// from at random, so that load spreads over the close peers.
	nearest = 3
	// maxTries is how many holders one attempt at a chunk asks.
	maxTries = 3
	// stallTimeout ends a round that stored no chunk for this long (the
	// next round resumes).
	stallTimeout = 20 * time.Second
	// haveMaxAge is how often the peers still fetching are asked which
	// chunks they hold.
	haveMaxAge = 500 * time.Millisecond
	// maxHaveQueries is how many of them (the nearest) are asked.
	maxHaveQueries = 12
	// rttBucket groups round-trip times that count as equally near.
	rttBucket = 5 * time.Millisecond
)

// errBusy means a peer refused a chunk request for now.
var errBusy = errors.New("peer busy")

// fetchRun is one round of fetching a release's missing chunks.
type fetchRun struct {
	a     *Agent
	m     *Manifest
	index map[string]int // chunk hash -> bit in a have bitmap

	// mu guards have: the last have bitmap of each peer still fetching.
	mu   sync.Mutex
	have map[string][]byte
}

// fetch gets the missing chunks of m from the peers that announce m, with
// Config.Parallel requests at once, in an order of the box's own, so that
// boxes fetching at the same time hold different chunks and serve each
// other. A chunk is asked first from a near peer that is still fetching and
// holds it (its have bitmap says so), then from one that has the whole
// release: boxes that got a chunk pass it on, and the source of a release
// does not send every chunk to everybody. It returns nil when every chunk
// is stored.
func (a *Agent) fetch(ctx context.Context, m *Manifest) error {
	a.reuseLocal(m)
	missing := a.store.Missing(m)
	if len(missing) == 0 {
		return nil
	}
	if len(a.holders(m.Version, nil)) == 0 {
		return fmt.Errorf("%w: %d chunks missing and no peer announces release %s", ErrIncomplete, len(missing), m.Version)
	}
	f := &fetchRun{a: a, m: m, index: map[string]int{}, have: map[string][]byte{}}
	for i, c := range m.UniqueChunks() {
		f.index[c.Hash] = i
	}
	seed := sha256.Sum256([]byte(a.cfg.NodeID + "\x00order\x00" + m.Version))
	rng := rand.New(rand.NewPCG(binary.BigEndian.Uint64(seed[:8]), binary.BigEndian.Uint64(seed[8:16])))
	rng.Shuffle(len(missing), func(i, j int) { missing[i], missing[j] = missing[j], missing[i] })

	var wg sync.WaitGroup
	rctx, stopRefresh := context.WithCancel(ctx)
	refreshRand := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	wg.Go(func() { f.refresh(rctx, refreshRand) })
	defer func() {
		stopRefresh()
		wg.Wait()
	}()
	q := &chunkQueue{progress: time.Now()}
	for _, c := range missing {
		q.todo = append(q.todo, queued{ChunkRef: c})
	}
	var workers sync.WaitGroup
	for range min(a.cfg.Parallel, len(missing)) {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		workers.Go(func() { f.work(ctx, q, r) })
	}
	workers.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if n := len(q.todo); n > 0 {
		return fmt.Errorf("%w: %d chunks not fetched in %v, last: %v", ErrIncomplete, n, stallTimeout, q.last)
	}
	return nil
}

// chunkQueue is the chunks a fetchRun still needs. A chunk no holder could
// give goes back to the end, so workers move on to chunks others can give
// instead of waiting for one.
type chunkQueue struct {
	mu       sync.Mutex
	todo     []queued
	inflight int
	misses   int       // failed attempts in a row
	progress time.Time // of the last stored chunk
	last     error
}

// queued is a chunk in a chunkQueue.
type queued struct {
	ChunkRef
	fails int // attempts that found no holder giving it
}

// lastResortAfter is how many failed attempts at a chunk make the next
// one ask holders not to refuse it for load spreading.
const lastResortAfter = 8

// next takes a chunk; ok is false when the queue is empty or stalled.
// wait says to pause first: every chunk was tried in vain lately.
func (q *chunkQueue) next() (c queued, wait bool, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.todo) == 0 || time.Since(q.progress) > stallTimeout {
		return queued{}, false, false
	}
	c, q.todo = q.todo[0], q.todo[1:]
	q.inflight++
	return c, q.misses >= len(q.todo)+q.inflight, true
}

// done reports the outcome for c.
func (q *chunkQueue) done(c queued, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight--
	if err == nil {
		q.misses, q.progress = 0, time.Now()
		return
	}
	q.misses++
	q.last = err
	c.fails++
	q.todo = append(q.todo, c)
}

// work fetches chunks from q until it is empty or stalled, or ctx is done.
func (f *fetchRun) work(ctx context.Context, q *chunkQueue, r *rand.Rand) {
	for ctx.Err() == nil {
		c, wait, ok := q.next()
		if !ok {
			// Other workers may still put chunks back: wait for them
			// while any is in flight.
			q.mu.Lock()
			busy := q.inflight > 0 && time.Since(q.progress) <= stallTimeout
			q.mu.Unlock()
			if !busy {
				return
			}
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		if wait {
			sleep(ctx, time.Duration(50+r.IntN(200))*time.Millisecond)
		}
		err := f.try(ctx, c.ChunkRef, c.fails >= lastResortAfter, r)
		if err == nil {
			f.a.countChunk(f.m.Version)
		}
		q.done(c, err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// reuseLocal stores the missing chunks of m that the running system's
// artifacts (Config.Local) hold at the same place.
func (a *Agent) reuseLocal(m *Manifest) {
	if a.cfg.Local == nil {
		return
	}
	for _, art := range m.Artifacts {
		r := a.cfg.Local(art.Name)
		if r == nil {
			continue
		}
		buf := make([]byte, m.ChunkSize)
		for i, c := range art.Chunks {
			if a.store.HasChunk(c) {
				continue
			}
			n := m.ChunkLen(art, i)
			if _, err := r.ReadAt(buf[:n], int64(i)*m.ChunkSize); err != nil && !errors.Is(err, io.EOF) {
				break
			}
			if sum := sha256.Sum256(buf[:n]); hex.EncodeToString(sum[:]) != c {
				continue
			}
			if err := a.store.PutChunk(c, buf[:n]); err != nil {
				a.log.Warn("storing a local chunk failed", "error", err)
				return
			}
			a.reused.Add(n)
			a.countChunk(m.Version)
		}
	}
}

// holders returns the peers announcing version, nearest first; peers
// equally near come in random order (r nil: as Config.Peers lists them).
// complete reports for each whether it announced the whole release.
func (a *Agent) holders(version string, r *rand.Rand) []Peer {
	if a.cfg.Peers == nil {
		return nil
	}
	var out []Peer
	for _, p := range a.cfg.Peers() {
		if _, ok := holds(p, version, a.cfg.Board); ok {
			out = append(out, p)
		}
	}
	if r != nil {
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].RTT/rttBucket < out[j].RTT/rttBucket })
	return out
}

// holds returns what p announces of version.
func holds(p Peer, version, board string) (Held, bool) {
	for _, h := range p.Holds {
		if h.Version == version && h.Board == board {
			return h, true
		}
	}
	return Held{}, false
}

// refresh asks the nearest peers that are still fetching the release for
// the chunks they hold, every haveMaxAge until ctx is done.
func (f *fetchRun) refresh(ctx context.Context, r *rand.Rand) {
	for {
		var wg sync.WaitGroup
		n := 0
		for _, p := range f.a.holders(f.m.Version, r) {
			if h, _ := holds(p, f.m.Version, f.a.cfg.Board); h.Complete || n == maxHaveQueries {
				continue
			}
			n++
			wg.Go(func() {
				bits, err := f.a.get(ctx, p.URL+releasePath(f.m.Version, haveFile), int64(len(f.index)/8+1))
				if err != nil {
					bits = nil
				}
				f.mu.Lock()
				f.have[p.ID] = bits
				f.mu.Unlock()
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-time.After(haveMaxAge):
		}
	}
}

// peerHas reports whether p's last have bitmap says it holds chunk i.
func (f *fetchRun) peerHas(p Peer, i int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	bits := f.have[p.ID]
	return i/8 < len(bits) && bits[i/8]&(1<<(i%8)) != 0
}

// candidates orders the holders of chunk i: peers still fetching that hold
// it, then peers with the whole release, each group nearest first with a
// random one of the nearest few at its head.
func (f *fetchRun) candidates(i int, r *rand.Rand) []Peer {
	var partial, complete []Peer
	for _, p := range f.a.holders(f.m.Version, r) {
		h, _ := holds(p, f.m.Version, f.a.cfg.Board)
		switch {
		case h.Complete:
			complete = append(complete, p)
		case f.peerHas(p, i):
			partial = append(partial, p)
		}
	}
	pick := func(ps []Peer) []Peer {
		// A random one of the nearest few first.
		if n := min(nearest, len(ps)); n > 1 {
			j := r.IntN(n)
			ps[0], ps[j] = ps[j], ps[0]
		}
		return ps
	}
	return slices.Concat(pick(partial), pick(complete))
}

// try asks the candidates for chunk c, in order, until one gives it.
func (f *fetchRun) try(ctx context.Context, c ChunkRef, lastResort bool, r *rand.Rand) error {
	if f.a.store.HasChunk(c.Hash) {
		return nil
	}
	cands := f.candidates(f.index[c.Hash], r)
	if len(cands) == 0 {
		return fmt.Errorf("chunk %.12s: no peer holds it", c.Hash)
	}
	var errs []error
	for _, p := range cands[:min(len(cands), maxTries)] {
		err := f.a.getChunk(ctx, p, c, lastResort)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("chunk %.12s from %s: %w", c.Hash, p.ID, err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// getChunk fetches chunk c from p and stores it if it matches its hash.
func (a *Agent) getChunk(ctx context.Context, p Peer, c ChunkRef, lastResort bool) error {
	ctx, cancel := context.WithTimeout(ctx, chunkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+chunkPath(c.Hash), nil)
	if err != nil {
		return err
	}
	if lastResort {
		req.Header.Set(lastResortHeader, "1")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		return errBusy
	default:
		return fmt.Errorf("%s", resp.Status)
	}
	buf := make([]byte, 0, c.Len)
	body := io.LimitReader(resp.Body, c.Len+1)
	piece := make([]byte, 64<<10)
	for {
		n, err := body.Read(piece)
		if n > 0 {
			buf = append(buf, piece[:n]...)
			if werr := a.down.wait(ctx, n); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading chunk (truncated?): %w", err)
		}
	}
	sum := sha256.Sum256(buf)
	if int64(len(buf)) != c.Len || hex.EncodeToString(sum[:]) != c.Hash {
		return fmt.Errorf("%w: %d bytes received", ErrChunkMismatch, len(buf))
	}
	if a.store.HasChunk(c.Hash) {
		return nil // another worker was faster
	}
	if err := a.store.PutChunk(c.Hash, buf); err != nil {
		return err
	}
	a.downloaded.Add(int64(len(buf)))
	return nil
}
