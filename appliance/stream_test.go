//go:build !router

package appliance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/google/go-cmp/cmp"
)

// TestStreamSources: where a box pulls a stream from, best first: relays
// before the origin unless the origin is clearly nearer, never a relay
// that pulls from this box, never this box.
func TestStreamSources(t *testing.T) {
	rec := func(typ, name, owner string, ip byte, txt map[string]string) services.Record {
		return services.Record{Service: services.Service{Instance: name, Type: typ, Port: 80, TXT: txt},
			OwnerID: owner, OwnerName: owner, OwnerIPv4: netip.AddrFrom4([4]byte{198, 18, 0, ip}), Healthy: true}
	}
	records := map[string][]services.Record{
		streamType: {rec(streamType, "show", "a", 1, nil), rec(streamType, "other", "a", 1, nil)},
		streamRelayType: {
			rec(streamRelayType, "show", "b", 2, map[string]string{"up": "a"}),
			rec(streamRelayType, "show", "far", 4, map[string]string{"up": "a"}),
			rec(streamRelayType, "show", "loop", 5, map[string]string{"up": "me"}),
			rec(streamRelayType, "show", "me", 3, map[string]string{"up": "a"}),
		},
	}
	ms := time.Millisecond
	d := func(rtt time.Duration) overlayPath { return overlayPath{RTT: rtt, Direct: true} }
	for _, tc := range []struct {
		name  string
		paths map[string]overlayPath
		want  []string
	}{
		{"relay nearer", map[string]overlayPath{"a": d(5 * ms), "b": d(ms), "far": d(40 * ms)}, []string{"b", "a", "far"}},
		{"relay as near as the origin", map[string]overlayPath{"a": d(ms), "b": d(ms), "far": d(40 * ms)}, []string{"b", "a", "far"}},
		{"origin clearly nearer", map[string]overlayPath{"a": d(ms), "b": d(10 * ms), "far": d(40 * ms)}, []string{"a", "b", "far"}},
		{"unknown RTTs last", map[string]overlayPath{"a": d(ms)}, []string{"a", "b", "far"}},
		{"direct before relayed", map[string]overlayPath{"a": {RTT: ms / 2}, "b": d(6 * ms), "far": {RTT: ms}}, []string{"b", "far", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &streamService{nodeID: "me", paths: func() map[string]overlayPath { return tc.paths },
				records: func(typ string) []services.Record { return records[typ] }}
			var got []string
			for _, s := range st.sources("show") {
				got = append(got, s.NodeID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("sources (-want +got):\n%s", diff)
			}
		})
	}
	st := &streamService{nodeID: "me", paths: func() map[string]overlayPath { return nil },
		records: func(typ string) []services.Record { return records[typ] }}
	if got, want := st.sources("show")[0].URL, "http://198.18.0.2:80/api/v1/streams/show/whep"; got != want {
		t.Errorf("URL of the first source %q, want %q", got, want)
	}
}
