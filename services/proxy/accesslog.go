package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// AccessLogFields are the fields an [AccessLog] can keep. "bytes" is up
// plus down; "url" is the full request target with path and query (see
// AccessEntry.URL), kept only when asked for by name.
var AccessLogFields = []string{"time", "user", "box", "method", "host", "status", "up", "down", "bytes", "url"}

// Defaults of AccessLogConfig.
const (
	// DefaultAccessLogDays is how many days of access log are kept.
	DefaultAccessLogDays = 7
	// DefaultAccessLogDayBytes bounds one day's file; lines beyond it are
	// dropped and counted.
	DefaultAccessLogDayBytes = 16 << 20
)

// accessLogPrefix and accessLogSuffix frame the day in a file name:
// access-2006-01-02.log.
const (
	accessLogPrefix = "access-"
	accessLogSuffix = ".log"
	accessLogDay    = "2006-01-02"
)

// ParseAccessLogFields parses a comma-separated list of AccessLogFields,
// e.g. "time,user,host,status". Empty means no access log (nil). Fields are
// written in the order given; duplicates are an error.
func ParseAccessLogFields(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch {
		case !slices.Contains(AccessLogFields, f):
			return nil, fmt.Errorf("unknown access log field %q (known: %s)", f, strings.Join(AccessLogFields, ","))
		case slices.Contains(out, f):
			return nil, fmt.Errorf("access log field %q given twice", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// AccessLogConfig configures an [AccessLog]. Dir and Fields are required.
type AccessLogConfig struct {
	// Dir holds one file per day (UTC), access-YYYY-MM-DD.log; it is
	// created (mode 0700) when missing.
	Dir string
	// Fields are the AccessLogFields kept, in the order of a line.
	Fields []string
	// Days is how many days of files are kept, today included; older
	// ones are deleted when the log opens and at each Prune. Zero means
	// DefaultAccessLogDays.
	Days int
	// MaxDayBytes bounds one day's file; zero means
	// DefaultAccessLogDayBytes.
	MaxDayBytes int64
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
}

// AccessLog writes the access entries of a [Proxy] (its Log method is a
// Config.AccessLog) to one file per day, keeping only the fields the owner
// chose, for a bounded number of days and bytes per day.
type AccessLog struct {
	cfg     AccessLogConfig
	dropped atomic.Uint64

	mu   sync.Mutex
	day  string // of f
	f    *os.File
	size int64
}

// OpenAccessLog creates the directory and deletes the files older than the
// retention.
func OpenAccessLog(cfg AccessLogConfig) (*AccessLog, error) {
	if cfg.Dir == "" {
		return nil, errors.New("access log: no directory")
	}
	if len(cfg.Fields) == 0 {
		return nil, errors.New("access log: no fields")
	}
	for _, f := range cfg.Fields {
		if !slices.Contains(AccessLogFields, f) {
			return nil, fmt.Errorf("access log: unknown field %q", f)
		}
	}
	if cfg.Days <= 0 {
		cfg.Days = DefaultAccessLogDays
	}
	if cfg.MaxDayBytes <= 0 {
		cfg.MaxDayBytes = DefaultAccessLogDayBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	l := &AccessLog{cfg: cfg}
	if err := l.Prune(); err != nil {
		return nil, err
	}
	return l, nil
}

// Dropped returns how many entries were not written: over the day's
// bound, or the file could not be written.
func (l *AccessLog) Dropped() uint64 { return l.dropped.Load() }

// Log appends e to today's file.
func (l *AccessLog) Log(e AccessEntry) {
	line := l.format(e)
	now := l.cfg.Now().UTC()
	day := now.Format(accessLogDay)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.day != day || l.f == nil {
		if l.f != nil {
			l.f.Close()
			l.f = nil
			l.pruneLocked(now) // a new day: the oldest file goes
		}
		f, err := os.OpenFile(filepath.Join(l.cfg.Dir, accessLogPrefix+day+accessLogSuffix), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			l.dropped.Add(1)
			l.cfg.Logger.Warn("access log open failed", "error", err)
			return
		}
		var size int64
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		l.f, l.day, l.size = f, day, size
	}
	if l.size+int64(len(line)) > l.cfg.MaxDayBytes {
		l.dropped.Add(1)
		return
	}
	n, err := io.WriteString(l.f, line)
	l.size += int64(n)
	if err != nil {
		l.dropped.Add(1)
		l.cfg.Logger.Warn("access log write failed", "error", err)
	}
}

// format renders the chosen fields of e as one line of key=value pairs;
// values with spaces, quotes, '=' or anything unprintable are quoted, so a
// client cannot forge lines.
func (l *AccessLog) format(e AccessEntry) string {
	var b strings.Builder
	for i, f := range l.cfg.Fields {
		var v string
		switch f {
		case "time":
			v = e.Time.UTC().Format(time.RFC3339)
		case "user":
			v = e.User
		case "box":
			v = e.Box
		case "method":
			v = e.Method
		case "host":
			v = e.Host
		case "status":
			v = strconv.Itoa(e.Status)
		case "up":
			v = strconv.FormatInt(max(e.BytesUp, 0), 10)
		case "down":
			v = strconv.FormatInt(max(e.BytesDown, 0), 10)
		case "bytes":
			v = strconv.FormatInt(max(e.BytesUp, 0)+max(e.BytesDown, 0), 10)
		case "url":
			v = e.URL
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f)
		b.WriteByte('=')
		b.WriteString(logValue(v))
	}
	b.WriteByte('\n')
	return b.String()
}

// logValue returns v, quoted when it is empty or not plain.
func logValue(v string) string {
	if v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || r == '\\' || r > unicode.MaxASCII || !unicode.IsPrint(r)
	}) {
		return strconv.QuoteToASCII(v)
	}
	return v
}

// Prune deletes the files older than the retention.
func (l *AccessLog) Prune() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pruneLocked(l.cfg.Now().UTC())
}

func (l *AccessLog) pruneLocked(now time.Time) error {
	ents, err := os.ReadDir(l.cfg.Dir)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	y, m, d := now.Date()
	oldest := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -(l.cfg.Days - 1))
	var errs []error
	for _, ent := range ents {
		name := ent.Name()
		ds, ok := strings.CutPrefix(name, accessLogPrefix)
		ds, ok2 := strings.CutSuffix(ds, accessLogSuffix)
		if !ok || !ok2 || !ent.Type().IsRegular() {
			continue
		}
		t, err := time.Parse(accessLogDay, ds)
		if err != nil || !t.Before(oldest) {
			continue
		}
		if err := os.Remove(filepath.Join(l.cfg.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("access log: deleting old files: %w", err)
	}
	return nil
}

// Run prunes every hour until ctx is done, then closes the file.
func (l *AccessLog) Run(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Close()
			return
		case <-t.C:
			if err := l.Prune(); err != nil {
				l.cfg.Logger.Warn("access log prune failed", "error", err)
			}
		}
	}
}

// Close closes the current file; a later Log opens it again.
func (l *AccessLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
