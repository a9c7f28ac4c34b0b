package vault

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// streamTimeout returns how long a share of n bytes may take to stream:
// a floor, plus the time at 256 KiB/s.
func streamTimeout(n int64) time.Duration {
	return shareTimeout + time.Duration(n/(256<<10))*time.Second
}

// upload streams one share to its holder: a PUT whose body the encoder
// feeds, one shard at a time, through a pipe. A failed upload drops what
// it is given, so that the encoder never waits for it.
type upload struct {
	idx int
	box Box
	// hashes is the share's hash list, appended by the encoder.
	hashes []byte

	ch   chan []byte // to the writer goroutine
	pw   *io.PipeWriter
	done chan struct{}
	err  error // set before done is closed
}

// startUpload starts the PUT of share idx of m to box. The caller sends
// the shards with send and ends with finish or abort, then waits.
func (v *Vault) startUpload(ctx context.Context, m *Manifest, idx int, box Box) *upload {
	pr, pw := io.Pipe()
	u := &upload{idx: idx, box: box, ch: make(chan []byte, 2), pw: pw, done: make(chan struct{})}
	reqDone := make(chan error, 1)
	go func() {
		u := box.URL + shareURL(m.Owner, m.File, idx) + "?size=" + strconv.FormatInt(m.shareSize(0), 10)
		err := v.doReader(ctx, http.MethodPut, u, pr, -1,
			streamTimeout(m.shareDataLen()), nil)
		pr.CloseWithError(cmpErr(err, io.ErrClosedPipe))
		reqDone <- err
	}()
	go func() {
		var werr error
		for b := range u.ch {
			if werr == nil {
				_, werr = pw.Write(b)
			}
		}
		if werr == nil {
			pw.Close()
		}
		err := <-reqDone
		u.err = cmpErr(err, werr)
		close(u.done)
	}()
	u.ch <- uploadHead(idx)
	return u
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// send queues the shard of the next stripe and appends its hash.
func (u *upload) send(shard []byte) {
	sum := sha256.Sum256(shard)
	u.hashes = append(u.hashes, sum[:]...)
	u.ch <- shard
}

// finish sends the hash list and the signed manifest and ends the body.
func (u *upload) finish(raw []byte) {
	u.ch <- uploadTail(u.hashes, raw)
	close(u.ch)
}

// abort ends the body with an error: the holder gets a broken request
// and stores nothing.
func (u *upload) abort(err error) {
	u.pw.CloseWithError(err)
	close(u.ch)
}

// wait returns the holder's answer.
func (u *upload) wait() error {
	<-u.done
	return u.err
}

// shareStream reads one share from its holder, checking each shard.
type shareStream struct {
	idx    int
	box    Box
	hashes []byte
	body   io.ReadCloser
	br     *bufio.Reader
	next   int // the stripe the stream is at
	cancel context.CancelFunc
}

// openShare asks box for share idx of m from stripe j on.
func (v *Vault) openShare(ctx context.Context, m *Manifest, idx int, box Box, j int) (*shareStream, error) {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout(m.shareDataLen()))
	u := box.URL + shareURL(m.Owner, m.File, idx)
	if off := m.dataOffset(j); off > 0 {
		u += "?offset=" + strconv.FormatInt(off, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, msg)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	hashes, err := readServedHead(br, m, idx)
	if err != nil {
		resp.Body.Close()
		cancel()
		return nil, err
	}
	return &shareStream{idx: idx, box: box, hashes: hashes, body: resp.Body, br: br, next: j, cancel: cancel}, nil
}

// read reads and checks the shard of stripe j into buf.
func (s *shareStream) read(m *Manifest, j int, buf []byte) ([]byte, error) {
	if j != s.next {
		return nil, fmt.Errorf("share %d read at stripe %d, not %d", s.idx, j, s.next)
	}
	b := buf[:m.shardLen(j)]
	if _, err := io.ReadFull(s.br, b); err != nil {
		return nil, fmt.Errorf("reading share %d from %s: %w", s.idx, s.box.Name, err)
	}
	if err := checkShard(m, s.idx, j, s.hashes, b); err != nil {
		return nil, err
	}
	s.next++
	return b, nil
}

func (s *shareStream) close() {
	s.body.Close()
	s.cancel()
}

// stripeReader reads a file's stripes from K of its shares, and moves on
// to another holder when one fails or sends a corrupt shard.
type stripeReader struct {
	v *Vault
	m *Manifest
	// cands are the holders not tried yet, the live ones first.
	cands []int
	boxes map[int]Box
	open  []*shareStream
	bufs  map[int][]byte
	errs  []error
}

// newStripeReader returns a reader of m's stripes from its holders.
func (v *Vault) newStripeReader(m *Manifest) *stripeReader {
	live := v.boxMap()
	r := &stripeReader{v: v, m: m, boxes: make(map[int]Box), bufs: make(map[int][]byte)}
	var later []int
	for i, h := range m.Holders {
		if h == "" {
			continue
		}
		if b, ok := live[h]; ok {
			r.boxes[i] = b
			r.cands = append(r.cands, i)
			continue
		}
		if v.cfg.Locate != nil {
			if u, ok := v.cfg.Locate(h); ok {
				r.boxes[i] = Box{ID: h, Name: h, URL: u}
				later = append(later, i)
			}
		}
	}
	r.cands = append(r.cands, later...)
	return r
}

// fill opens shares until K are open at stripe j. It asks every holder
// not tried yet at once and keeps the first to answer: a holder that is
// gone but still listed does not hold the read up. The others are closed
// and stay candidates.
func (r *stripeReader) fill(ctx context.Context, j int) error {
	need := r.m.K - len(r.open)
	if need <= 0 {
		return nil
	}
	try := r.cands
	r.cands = nil
	type result struct {
		k   int
		s   *shareStream
		err error
	}
	results := make(chan result, len(try))
	cancels := make([]context.CancelFunc, len(try))
	for k, idx := range try {
		actx, cancel := context.WithCancel(ctx)
		cancels[k] = cancel
		go func() {
			s, err := r.v.openShare(actx, r.m, idx, r.boxes[idx], j)
			if s != nil {
				inner := s.cancel
				s.cancel = func() { inner(); cancel() }
			}
			results <- result{k, s, err}
		}()
	}
	done := make([]bool, len(try))
	pending := len(try)
	for ; pending > 0 && need > 0; pending-- {
		res := <-results
		done[res.k] = true
		if res.err != nil {
			cancels[res.k]()
			r.fail(try[res.k], res.err)
			continue
		}
		r.open = append(r.open, res.s)
		need--
	}
	for k, d := range done {
		if !d {
			cancels[k]()
		}
	}
	for ; pending > 0; pending-- {
		res := <-results
		if res.s != nil {
			res.s.close()
		}
		// Asked too late, or cut off: it may serve later.
		r.cands = append(r.cands, try[res.k])
	}
	if need > 0 {
		return fmt.Errorf("file %s: %w: %d of %d needed: %w", r.m.File, ErrTooFewShares, len(r.open), r.m.K, errors.Join(r.errs...))
	}
	return nil
}

// fail records why share idx could not be read.
func (r *stripeReader) fail(idx int, err error) {
	if errors.Is(err, ErrCorruptShare) || errors.Is(err, ErrMalformed) {
		r.v.mu.Lock()
		r.v.corrupt++
		r.v.mu.Unlock()
		r.v.log.Warn("vault share refused", "file", r.m.File, "index", idx, "box", r.boxes[idx].Name, "error", err)
	}
	r.errs = append(r.errs, err)
}

// stripe returns the N shards of stripe j with at least K present and
// checked; the others are nil. The shards are valid until the next call.
func (r *stripeReader) stripe(ctx context.Context, j int) ([][]byte, error) {
	shards := make([][]byte, r.m.N)
	for {
		if err := r.fill(ctx, j); err != nil {
			return nil, err
		}
		var at []*shareStream
		for _, s := range r.open {
			if s.next == j {
				at = append(at, s)
			}
		}
		errs := make([]error, len(at))
		var wg sync.WaitGroup
		for k, s := range at {
			buf := r.bufs[s.idx]
			if buf == nil {
				buf = make([]byte, r.m.shardLen(0))
				r.bufs[s.idx] = buf
			}
			wg.Go(func() { shards[s.idx], errs[k] = s.read(r.m, j, buf) })
		}
		wg.Wait()
		for k, s := range at {
			if errs[k] != nil {
				r.fail(s.idx, errs[k])
				s.close()
				shards[s.idx] = nil
				r.open = slices.DeleteFunc(r.open, func(o *shareStream) bool { return o == s })
			}
		}
		if len(r.open) >= r.m.K {
			return shards, nil
		}
	}
}

func (r *stripeReader) close() {
	for _, s := range r.open {
		s.close()
	}
	r.open = nil
}
