package services

import (
	"fmt"
	"io"
)

// stats are the catalog's counters, guarded by Catalog.mu.
type stats struct {
	accepted      uint64
	rejected      map[rejectReason]uint64
	pulls         uint64
	pullErrors    uint64
	pullsLimited  uint64
	served        uint64
	expired       uint64
	departures    uint64
	gossipRefused uint64
	badMeta       uint64
	stateCorrupt  uint64
}

// WriteMetrics writes the catalog's metrics in the Prometheus text format
// (version 0.0.4), without a trailing EOF marker, for the box's /metrics.
func (c *Catalog) WriteMetrics(w io.Writer) {
	var health int = -1
	c.mu.Lock()
	ml := c.ml
	s := c.stats
	rejected := make(map[rejectReason]uint64, len(s.rejected))
	for k, v := range s.rejected {
		rejected[k] = v
	}
	alive, gone, remote := 0, 0, 0
	for _, p := range c.peers {
		if p.alive {
			alive++
			if p.doc != nil {
				remote += len(p.doc.payload.Services)
			}
		} else {
			gone++
		}
	}
	local := len(c.own.payload.Services)
	version := c.own.meta.Version
	c.mu.Unlock()
	if ml != nil {
		health = ml.GetHealthScore()
	}

	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter("cloudbox_catalog_documents_accepted_total", "Catalog documents of other members verified and stored.", s.accepted)
	fmt.Fprintf(w, "# HELP cloudbox_catalog_documents_rejected_total Catalog documents dropped, by reason.\n# TYPE cloudbox_catalog_documents_rejected_total counter\n")
	for _, r := range rejectReasons {
		fmt.Fprintf(w, "cloudbox_catalog_documents_rejected_total{reason=%q} %d\n", r, rejected[r])
	}
	fmt.Fprintf(w, "# HELP cloudbox_catalog_pulls_total Catalog pulls, by result.\n# TYPE cloudbox_catalog_pulls_total counter\n")
	fmt.Fprintf(w, "cloudbox_catalog_pulls_total{result=\"ok\"} %d\n", s.pulls)
	fmt.Fprintf(w, "cloudbox_catalog_pulls_total{result=\"error\"} %d\n", s.pullErrors)
	fmt.Fprintf(w, "cloudbox_catalog_pulls_total{result=\"limited\"} %d\n", s.pullsLimited)
	counter("cloudbox_catalog_served_total", "Catalog documents served to other members.", s.served)
	counter("cloudbox_catalog_leases_expired_total", "Catalogs dropped because their lease expired.", s.expired)
	counter("cloudbox_catalog_member_departures_total", "Members declared dead or that left.", s.departures)
	counter("cloudbox_catalog_gossip_refused_total", "Gossip about non-members or from wrong addresses refused.", s.gossipRefused)
	counter("cloudbox_catalog_bad_summaries_total", "Gossiped catalog summaries that could not be parsed.", s.badMeta)
	counter("cloudbox_catalog_state_corrupt_total", "Unusable services files moved aside at start.", s.stateCorrupt)
	fmt.Fprintf(w, "# HELP cloudbox_catalog_members Other members by gossip state.\n# TYPE cloudbox_catalog_members gauge\n")
	fmt.Fprintf(w, "cloudbox_catalog_members{state=\"alive\"} %d\n", alive)
	fmt.Fprintf(w, "cloudbox_catalog_members{state=\"gone\"} %d\n", gone)
	fmt.Fprintf(w, "# HELP cloudbox_catalog_entries Services in the catalog.\n# TYPE cloudbox_catalog_entries gauge\n")
	fmt.Fprintf(w, "cloudbox_catalog_entries{owner=\"local\"} %d\n", local)
	fmt.Fprintf(w, "cloudbox_catalog_entries{owner=\"remote\"} %d\n", remote)
	gauge("cloudbox_catalog_version", "Version of this box's signed catalog.", int64(version))
	gauge("cloudbox_catalog_gossip_health_score", "memberlist's local health (Lifeguard awareness; 0 is best, -1 not running).", int64(health))
}
