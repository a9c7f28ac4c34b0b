//go:build !router

package appliance

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/stream/voip"
)

func testVoIP(t *testing.T, nodeID string, recs *[]services.Record, now func() time.Time) *voipService {
	t.Helper()
	return openVoIP(VoIPConfig{RecordDays: 10}, voipDeps{nodeID: nodeID, nodeName: "box", stateDir: t.TempDir(),
		records:  func(string) []services.Record { return *recs },
		accounts: func() []account { return []account{{Name: "alice"}, {Name: "bob"}} }}, slog.New(slog.DiscardHandler), now)
}

// TestExtensionPrefix: numbers come from the node ID; a box that sees its
// prefix published by a box with a smaller node ID moves, the other keeps
// it; extensions follow.
func TestExtensionPrefix(t *testing.T) {
	var recs []services.Record
	v := testVoIP(t, "node-m", &recs, time.Now)
	v.syncUsers()
	ext, secret, ok := v.extension("alice")
	if !ok || len(ext) != 6 || ext[:4] != prefixFor("node-m", 0) || len(secret) < 16 {
		t.Fatalf("alice: %q %q %v, want prefix %s", ext, secret, ok, prefixFor("node-m", 0))
	}
	if name, _, ok := v.byExtension(ext); !ok || name != "alice" {
		t.Fatalf("byExtension(%s) = %q %v", ext, name, ok)
	}
	mine := ext[:4]
	// a larger node ID with the same prefix: we keep ours
	recs = []services.Record{{Service: services.Service{TXT: map[string]string{"pfx": mine}}, OwnerID: "node-z"}}
	v.checkPrefix()
	if e, _, _ := v.extension("alice"); e[:4] != mine {
		t.Fatalf("prefix moved to %s for a larger node ID", e[:4])
	}
	// a smaller one: we move, and keep the numbers after the prefix
	recs = append(recs, services.Record{Service: services.Service{TXT: map[string]string{"pfx": mine}}, OwnerID: "node-a"})
	v.checkPrefix()
	e, s2, _ := v.extension("alice")
	if e[:4] == mine || e[4:] != ext[4:] || s2 != secret {
		t.Fatalf("after a conflict alice is %s (%s), want a new prefix, same number and password", e, s2)
	}
	// the move is saved
	b, err := os.ReadFile(v.statePath())
	if err != nil || !strings.Contains(string(b), `"prefix": "`+e[:4]+`"`) {
		t.Fatalf("saved state %s %v", b, err)
	}
	// locate: exact extension first, then a box's prefix
	recs = []services.Record{
		{Service: services.Service{Port: 5060, TXT: map[string]string{"pfx": "7777"}}, OwnerID: "node-q", OwnerIPv4: netip.MustParseAddr("198.18.0.9")},
		{Service: services.Service{Port: 5061, TXT: map[string]string{"ext": "777701"}}, OwnerID: "node-q", OwnerIPv4: netip.MustParseAddr("198.18.0.9")},
	}
	if ap, ok := v.locate("777701"); !ok || ap.String() != "198.18.0.9:5061" {
		t.Errorf("locate(777701) = %v %v", ap, ok)
	}
	if ap, ok := v.locate("777705"); !ok || ap.String() != "198.18.0.9:5060" {
		t.Errorf("locate(777705) = %v %v", ap, ok)
	}
	if _, ok := v.locate("888801"); ok {
		t.Error("located an extension nobody has")
	}
}

// TestCallRecordsRetention: records are appended to the file, and those
// older than RecordDays are dropped.
func TestCallRecordsRetention(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var recs []services.Record
	v := testVoIP(t, "node-m", &recs, func() time.Time { return now })
	v.record(voip.Record{ID: "old", From: "1", To: "2", End: now.AddDate(0, 0, -11)})
	v.record(voip.Record{ID: "new", From: "1", To: "2", End: now.AddDate(0, 0, -1), Result: "answered"})
	v.pruneRecords()
	b, err := os.ReadFile(filepath.Join(v.dir, "calls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var r voip.Record
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &r) != nil || r.ID != "new" {
		t.Fatalf("records file after pruning:\n%s", b)
	}
	if got := v.info().Records; len(got) != 1 || got[0].ID != "new" {
		t.Fatalf("API records %+v", got)
	}
	// a restart reads them back
	v2 := testVoIP(t, "node-m", &recs, func() time.Time { return now })
	v2.dir = v.dir
	if err := v2.load(); err != nil || len(v2.recent) != 1 {
		t.Fatalf("reloaded %+v %v", v2.recent, err)
	}
}
