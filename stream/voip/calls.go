package voip

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Call states.
const (
	StateRinging = "ringing"
	StateActive  = "active"
)

// Call is a call in progress, for the API.
type Call struct {
	ID       string    `json:"id"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	State    string    `json:"state"`
	Start    time.Time `json:"start"`
	Answered time.Time `json:"answered,omitzero"`
	// PacketsFrom and PacketsTo count the media packets relayed from the
	// caller and from the callee.
	PacketsFrom uint64 `json:"packets_from"`
	PacketsTo   uint64 `json:"packets_to"`
}

// Record is a call detail record: who called whom, when, for how long, and
// how it ended.
type Record struct {
	ID       string        `json:"id"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	Start    time.Time     `json:"start"`
	Answered time.Time     `json:"answered,omitzero"`
	End      time.Time     `json:"end"`
	Duration time.Duration `json:"duration"` // answered to end; 0 when not answered
	// Result is "answered", "cancelled", "timeout" (media stopped), or the
	// SIP status of the failure ("404 Not Found", "486 Busy Here", ...).
	Result string `json:"result"`
}

// call is the proxy's state of one call (by Call-ID).
type call struct {
	id, from, to string
	callerTag    string
	start        time.Time
	media        *MediaSession

	// guarded by callTable.mu
	answered time.Time
	ended    bool
	// for ending it ourselves (media timeout): the two sides' in-dialog
	// data, filled from the INVITE and its 2xx.
	caller, callee dialogSide
}

// dialogSide is what it takes to send a BYE to one side of a call.
type dialogSide struct {
	target  string // Contact URI
	tag     string
	uri     string // the side's own From/To URI
	via     peer   // where its messages came from
	cseq    uint32
	present bool
}

// callTable holds the calls by Call-ID. Safe for concurrent use.
type callTable struct {
	s     *Server
	mu    sync.Mutex
	calls map[string]*call
}

func newCallTable(s *Server) *callTable {
	return &callTable{s: s, calls: make(map[string]*call)}
}

// get returns the call with id, creating it when create is set.
func (t *callTable) get(id string, create func() *call) *call {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.calls[id]
	if c == nil && create != nil {
		c = create()
		t.calls[id] = c
	}
	return c
}

// end removes the call, releases its media and writes its record.
func (t *callTable) end(id, result string) {
	t.mu.Lock()
	c := t.calls[id]
	if c == nil || c.ended {
		t.mu.Unlock()
		return
	}
	c.ended = true
	delete(t.calls, id)
	t.mu.Unlock()
	t.finish(c, result)
}

func (t *callTable) finish(c *call, result string) {
	if c.media != nil {
		c.media.Close()
	}
	now := t.s.now()
	r := Record{ID: c.id, From: c.from, To: c.to, Start: c.start, Answered: c.answered, End: now, Result: result}
	if !c.answered.IsZero() {
		r.Duration = now.Sub(c.answered).Round(time.Millisecond)
	}
	if t.s.cfg.OnRecord != nil {
		t.s.cfg.OnRecord(r)
	}
}

func (t *callTable) closeAll() {
	t.mu.Lock()
	calls := t.calls
	t.calls = map[string]*call{}
	for _, c := range calls {
		c.ended = true
	}
	t.mu.Unlock()
	for _, c := range calls {
		t.finish(c, "shutdown")
	}
}

// Calls returns the calls in progress, oldest first.
func (s *Server) Calls() []Call {
	s.calls.mu.Lock()
	out := make([]Call, 0, len(s.calls.calls))
	for _, c := range s.calls.calls {
		st := StateRinging
		if !c.answered.IsZero() {
			st = StateActive
		}
		cl := Call{ID: c.id, From: c.from, To: c.to, State: st, Start: c.start, Answered: c.answered}
		if c.media != nil {
			cl.PacketsFrom, cl.PacketsTo = c.media.Received(sideA), c.media.Received(sideB)
		}
		out = append(out, cl)
	}
	s.calls.mu.Unlock()
	slices.SortFunc(out, func(a, b Call) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Limits of unanswered and media-less calls.
const (
	ringTimeout  = 3 * time.Minute // no final response: the UAs gave up
	janitorEvery = 5 * time.Second
)

// janitor ends calls that cannot be going on any more: unanswered for too
// long, or answered with media that stopped from one side for
// MediaTimeout (a phone or a box gone; a phone that holds the call
// without sending is taken for gone as well).
func (s *Server) janitor(ctx context.Context) {
	tick := time.NewTicker(min(janitorEvery, s.cfg.MediaTimeout/2))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.sweep()
	}
}

func (s *Server) sweep() {
	now := s.now()
	var stale, dead []*call
	s.calls.mu.Lock()
	for _, c := range s.calls.calls {
		switch {
		case c.answered.IsZero() && now.Sub(c.start) > ringTimeout:
			stale = append(stale, c)
		case !c.answered.IsZero() && c.media != nil && c.media.Silent(time.Now()) > s.cfg.MediaTimeout:
			dead = append(dead, c)
		}
	}
	s.calls.mu.Unlock()
	for _, c := range stale {
		s.calls.end(c.id, "timeout")
	}
	for _, c := range dead {
		s.log.Info("call media stopped, ending it", "call", c.id, "from", c.from, "to", c.to)
		s.byeBoth(c)
		s.calls.end(c.id, "timeout")
	}
}
