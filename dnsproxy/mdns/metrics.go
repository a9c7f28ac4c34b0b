package mdns

import (
	"fmt"
	"io"
	"sync/atomic"
)

// counters are the responder's metrics; the run loop and the readers add,
// WriteMetrics reads.
type counters struct {
	received, malformed, ignored, foreign, queueFull, queries, responses, legacy, badPort,
	answered, suppressed, rateLimited, goodbyes, conflicts, cacheFull, querySent,
	sent, sendErrors atomic.Uint64
	// gauges, set by the run loop
	records, cached, found atomic.Int64
}

// WriteMetrics writes the responder's metrics in the Prometheus text
// format. It is safe to call at any time, also concurrently with Run.
func (r *Responder) WriteMetrics(w io.Writer) error {
	m := &r.m
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"packets_received_total", "mDNS packets received on the LAN interface.", m.received.Load()},
		{"malformed_packets_total", "Packets dropped because they are not DNS messages.", m.malformed.Load()},
		{"ignored_packets_total", "Messages ignored for their opcode or response code (RFC 6762 §18).", m.ignored.Load()},
		{"foreign_interface_packets_total", "Packets dropped because they arrived on another interface.", m.foreign.Load()},
		{"queue_full_packets_total", "Packets dropped because the responder was busy.", m.queueFull.Load()},
		{"queries_total", "Queries received.", m.queries.Load()},
		{"legacy_queries_total", "Queries from a port other than 5353, answered by unicast (RFC 6762 §6.7).", m.legacy.Load()},
		{"responses_received_total", "Responses received from other hosts.", m.responses.Load()},
		{"bad_port_responses_total", "Responses ignored because they did not come from port 5353.", m.badPort.Load()},
		{"answers_total", "Records sent in answers and announcements.", m.answered.Load()},
		{"known_answer_suppressed_total", "Answers left out because the querier knew them (RFC 6762 §7.1).", m.suppressed.Load()},
		{"rate_limited_total", "Answers left out because the record was multicast less than a second ago.", m.rateLimited.Load()},
		{"goodbyes_total", "Records withdrawn with TTL 0.", m.goodbyes.Load()},
		{"conflicts_total", "Records of other hosts that conflict with this responder's unique records.", m.conflicts.Load()},
		{"cache_full_total", "Browsed records dropped because the cache was full.", m.cacheFull.Load()},
		{"browse_queries_total", "Browse, refresh and resolve queries sent.", m.querySent.Load()},
		{"packets_sent_total", "mDNS packets sent.", m.sent.Load()},
		{"send_errors_total", "mDNS packets that could not be sent.", m.sendErrors.Load()},
	} {
		if _, err := fmt.Fprintf(w, "# HELP cloudbox_mdns_%s %s\n# TYPE cloudbox_mdns_%s counter\ncloudbox_mdns_%s %d\n",
			c.name, c.help, c.name, c.name, c.v); err != nil {
			return fmt.Errorf("writing mdns metrics: %w", err)
		}
	}
	for _, g := range []struct {
		name, help string
		v          int64
	}{
		{"records", "Records this responder answers for.", m.records.Load()},
		{"cached_records", "Records in the browser's cache.", m.cached.Load()},
		{"found_services", "Services found on the LAN by browsing.", m.found.Load()},
	} {
		if _, err := fmt.Fprintf(w, "# HELP cloudbox_mdns_%s %s\n# TYPE cloudbox_mdns_%s gauge\ncloudbox_mdns_%s %d\n",
			g.name, g.help, g.name, g.name, g.v); err != nil {
			return fmt.Errorf("writing mdns metrics: %w", err)
		}
	}
	return nil
}
