package voip

import (
	"fmt"
	"io"
)

// WriteMetrics writes the server's counters in the Prometheus text format
// (names cloudbox_voip_*).
func (s *Server) WriteMetrics(w io.Writer) {
	rs := s.relay.Stats()
	s.calls.mu.Lock()
	calls := len(s.calls.calls)
	s.calls.mu.Unlock()
	for _, m := range []struct {
		name, typ, help string
		v               uint64
	}{
		{"sip_received_total", "counter", "SIP messages received.", s.stats.received.Load()},
		{"sip_sent_total", "counter", "SIP messages sent.", s.stats.sent.Load()},
		{"sip_malformed_total", "counter", "SIP messages that could not be parsed or lacked required headers.", s.stats.malformed.Load()},
		{"auth_failures_total", "counter", "Failed digest authentications.", s.stats.authFailures.Load()},
		{"auth_blocked_total", "counter", "Requests refused because their source failed too often.", s.stats.blocked.Load()},
		{"calls", "gauge", "Calls in progress through this box.", uint64(calls)},
		{"registrations", "gauge", "Registered contacts.", uint64(len(s.Registrations()))},
		{"relay_packets_total", "counter", "RTP/RTCP packets relayed.", rs.Packets},
		{"relay_bytes_total", "counter", "Bytes relayed.", rs.Bytes},
		{"relay_dropped_total", "counter", "Packets dropped for want of a destination.", rs.Dropped},
		{"relay_ports", "gauge", "Relay ports in use.", uint64(rs.Ports)},
	} {
		fmt.Fprintf(w, "# HELP cloudbox_voip_%s %s\n# TYPE cloudbox_voip_%s %s\ncloudbox_voip_%s %d\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
}
