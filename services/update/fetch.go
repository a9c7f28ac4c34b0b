package update

import (
	"cmp"
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
	"sync"
	"time"
)

// Fetch tuning.
const (
	// chunkTimeout bounds one chunk request.
	chunkTimeout = 2 * time.Minute
	// nearest is how many of the nearest holders a chunk is asked from at
	// random, so that load spreads over the close peers.
	nearest = 3
	// fetchRounds is how many times every holder is tried for one chunk
	// before the round gives up (the next round resumes).
	fetchRounds = 8
)

// errBusy means a peer refused a chunk request for now.
var errBusy = errors.New("peer busy")

// fetch gets the missing chunks of m from the peers that announce m, with
// Config.Parallel requests at once, in an order of the box's own, so that
// boxes fetching at the same time hold different chunks and serve each
// other. It returns nil when every chunk is stored.
func (a *Agent) fetch(ctx context.Context, m *Manifest, peers []Peer) error {
	missing := a.store.Missing(m)
	if len(missing) == 0 {
		return nil
	}
	seed := sha256.Sum256([]byte(a.cfg.NodeID + "\x00order\x00" + m.Version))
	rng := rand.New(rand.NewPCG(binary.BigEndian.Uint64(seed[:8]), binary.BigEndian.Uint64(seed[8:16])))
	rng.Shuffle(len(missing), func(i, j int) { missing[i], missing[j] = missing[j], missing[i] })

	work := make(chan ChunkRef)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []error
	for range min(a.cfg.Parallel, len(missing)) {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Go(func() {
			for c := range work {
				if err := a.fetchChunk(ctx, m.Version, c, r); err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
					continue
				}
				a.mu.Lock()
				if rs := a.releases[m.Version]; rs != nil {
					rs.have++
				}
				a.mu.Unlock()
			}
		})
	}
feed:
	for _, c := range missing {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %d chunks not fetched, first: %v", ErrIncomplete, len(failed), failed[0])
	}
	return nil
}

// holders returns the peers announcing version, nearest first.
func (a *Agent) holders(version string) []Peer {
	if a.cfg.Peers == nil {
		return nil
	}
	var out []Peer
	for _, p := range a.cfg.Peers() {
		for _, h := range p.Holds {
			if h.Version == version && h.Board == a.cfg.Board {
				out = append(out, p)
				break
			}
		}
	}
	slices.SortStableFunc(out, func(x, y Peer) int { return cmp.Compare(x.RTT, y.RTT) })
	return out
}

// fetchChunk gets one chunk from a holder of version: a random one of the
// nearest that were not tried yet for it; when every holder was tried, it
// waits a little and starts over, up to fetchRounds times.
func (a *Agent) fetchChunk(ctx context.Context, version string, c ChunkRef, r *rand.Rand) error {
	if a.store.HasChunk(c.Hash) {
		return nil
	}
	var last error
	for round := range fetchRounds {
		tried := map[string]bool{}
		for {
			var cands []Peer
			for _, p := range a.holders(version) {
				if !tried[p.ID] {
					cands = append(cands, p)
				}
			}
			if len(cands) == 0 {
				break
			}
			p := cands[r.IntN(min(nearest, len(cands)))]
			tried[p.ID] = true
			err := a.getChunk(ctx, p, c)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = fmt.Errorf("chunk %.12s from %s: %w", c.Hash, p.ID, err)
		}
		if last == nil {
			last = fmt.Errorf("chunk %.12s: no peer holds release %s", c.Hash, version)
		}
		// Back off with jitter: holders are busy or do not have the
		// chunk yet.
		wait := time.Duration(100<<min(round, 4))*time.Millisecond + time.Duration(r.IntN(200))*time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return last
}

// getChunk fetches chunk c from p and stores it if it matches its hash.
func (a *Agent) getChunk(ctx context.Context, p Peer, c ChunkRef) error {
	ctx, cancel := context.WithTimeout(ctx, chunkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+chunkPath(c.Hash), nil)
	if err != nil {
		return err
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
	h := sha256.New()
	buf := make([]byte, 0, c.Len)
	body := io.LimitReader(resp.Body, c.Len+1)
	chunk := make([]byte, 64<<10)
	for {
		n, err := body.Read(chunk)
		if n > 0 {
			buf = append(buf, chunk[:n]...)
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
	h.Write(buf)
	if int64(len(buf)) != c.Len || hex.EncodeToString(h.Sum(nil)) != c.Hash {
		return fmt.Errorf("%w: %d bytes received", ErrChunkMismatch, len(buf))
	}
	if err := a.store.PutChunk(c.Hash, buf); err != nil {
		return err
	}
	a.downloaded.Add(int64(len(buf)))
	return nil
}
