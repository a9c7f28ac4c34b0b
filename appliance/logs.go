package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Bounds of the in-memory log: the daemon's recent records, shown on the
// Logs page and by GET /api/v1/logs. Nothing is written to the SD card.
const (
	logRecords    = 2000
	maxLogMessage = 200
	maxLogValue   = 300
	maxLogAttrs   = 24
	// defaultLogLimit is how many records the page and the API show
	// unless asked for another number, at most logRecords.
	defaultLogLimit = 200
)

// redacted replaces the value of an attribute that may carry a secret.
const redacted = "[redacted]"

// secretKeys are parts of attribute keys whose values are never kept.
var secretKeys = []string{"token", "password", "passwd", "secret", "setup_code", "credential", "private", "cookie", "authorization", "csrf"}

// secretPrefixes start values that are secrets whatever their key: API
// tokens, gateway credentials, invitations.
var secretPrefixes = []string{apiTokenPrefix, "cbp1_", "cloudbox-invite:"}

// logRecord is one record of the in-memory log.
type logRecord struct {
	Seq       uint64            `json:"seq"`
	Time      time.Time         `json:"time"`
	Level     string            `json:"level"`
	Component string            `json:"component"`
	Message   string            `json:"msg"`
	Attrs     map[string]string `json:"attrs,omitempty"`
	level     slog.Level
}

// logRing keeps the last logRecords records of the daemon's logger. It is
// safe for concurrent use.
type logRing struct {
	mu   sync.Mutex
	recs []logRecord // ring of at most logRecords
	next int         // where the next record goes once recs is full
	seq  uint64
}

func newLogRing() *logRing { return &logRing{} }

func (l *logRing) add(r logRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	r.Seq = l.seq
	if len(l.recs) < logRecords {
		l.recs = append(l.recs, r)
		return
	}
	l.recs[l.next] = r
	l.next = (l.next + 1) % logRecords
}

// logFilter selects records: at least Level, of Component ("" for all),
// the newest Limit.
type logFilter struct {
	Level     slog.Level
	Component string
	Limit     int
}

// records returns the records f selects, newest first.
func (l *logRing) records(f logFilter) []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logRecord
	for i := range len(l.recs) {
		r := l.recs[(l.next+len(l.recs)-1-i)%len(l.recs)]
		if len(out) >= f.Limit {
			break
		}
		if r.level >= f.Level && (f.Component == "" || r.Component == f.Component) {
			out = append(out, r)
		}
	}
	return out
}

// components returns the components that have records, sorted.
func (l *logRing) components() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if !slices.Contains(out, r.Component) {
			out = append(out, r.Component)
		}
	}
	slices.Sort(out)
	return out
}

// handler returns a slog handler that keeps records of level Info and
// above in l and passes every record next accepts on to next.
func (l *logRing) handler(next slog.Handler) slog.Handler {
	return &ringHandler{ring: l, next: next}
}

// ringHandler feeds a logRing; it is immutable.
type ringHandler struct {
	ring   *logRing
	next   slog.Handler
	attrs  []slog.Attr // from WithAttrs, with group prefixes applied
	prefix string      // groups from WithGroup, "a.b."
}

func (h *ringHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= slog.LevelInfo || h.next.Enabled(ctx, lv)
}

func (h *ringHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		rec := logRecord{Time: r.Time, Level: r.Level.String(), level: r.Level, Component: "daemon", Message: truncate(printable(r.Message), maxLogMessage)}
		add := func(key string, v slog.Value) {
			if key == "component" {
				rec.Component = truncate(v.String(), 32)
				return
			}
			if rec.Attrs == nil {
				rec.Attrs = make(map[string]string)
			}
			if len(rec.Attrs) < maxLogAttrs {
				rec.Attrs[key] = logValue(key, v)
			}
		}
		for _, a := range h.attrs {
			flattenAttr("", a, add)
		}
		r.Attrs(func(a slog.Attr) bool {
			flattenAttr(h.prefix, a, add)
			return true
		})
		h.ring.add(rec)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = slices.Clip(c.attrs)
	for _, a := range as {
		a.Key = h.prefix + a.Key
		c.attrs = append(c.attrs, a)
	}
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	c.next = h.next.WithGroup(name)
	return &c
}

// flattenAttr calls add for a, and for each attribute of a group, with
// dotted keys.
func flattenAttr(prefix string, a slog.Attr, add func(string, slog.Value)) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			flattenAttr(p, g, add)
		}
		return
	}
	if a.Key != "" {
		add(prefix+a.Key, v)
	}
}

// logValue renders v for the in-memory log, without secrets.
func logValue(key string, v slog.Value) string {
	lk := strings.ToLower(key)
	for _, s := range secretKeys {
		if strings.Contains(lk, s) {
			return redacted
		}
	}
	s := v.String()
	for _, p := range secretPrefixes {
		if strings.Contains(s, p) {
			return redacted
		}
	}
	return truncate(printable(s), maxLogValue)
}

// printable replaces control characters, which a page cannot show, by
// spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut at a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// parseLogFilter reads level, component and limit from a query; bad values
// are errors that name the parameter.
func parseLogFilter(q map[string][]string) (logFilter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := logFilter{Level: slog.LevelInfo, Component: get("component"), Limit: defaultLogLimit}
	if s := get("level"); s != "" {
		if err := f.Level.UnmarshalText([]byte(s)); err != nil {
			return f, fmt.Errorf("level %q: want debug, info, warn or error", s)
		}
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return f, fmt.Errorf("limit %q: want a number from 1 to %d", s, logRecords)
		}
		f.Limit = min(n, logRecords)
	}
	return f, nil
}

// logsAPI answers GET /api/v1/logs?level=&component=&limit=: the newest
// records first.
func (h *handler) logsAPI(w http.ResponseWriter, r *http.Request) {
	f, err := parseLogFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Records []logRecord `json:"records"`
	}{cmpNonNil(h.cfg.logs.records(f))})
}

func cmpNonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// logsPage shows the recent records with filters.
func (h *handler) logsPage(w http.ResponseWriter, r *http.Request) {
	f, err := parseLogFilter(r.URL.Query())
	code := http.StatusOK
	msg := ""
	if err != nil {
		code, msg = http.StatusBadRequest, "Cannot filter by "+err.Error()+"."
		f = logFilter{Level: slog.LevelInfo, Limit: defaultLogLimit}
	}
	h.render(w, code, h.panel.logs, struct {
		pageData
		Records    []logRecord
		Components []string
		Level      string
		Component  string
		Limit      int
		Error      string
		Levels     []string
	}{h.pageFor(r, "Logs", "/logs"), h.cfg.logs.records(f), h.cfg.logs.components(), strings.ToLower(f.Level.String()), f.Component, f.Limit, msg,
		[]string{"info", "warn", "error"}})
}
