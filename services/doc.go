// Package services is the community-wide service catalog: every box publishes
// the services it runs (its own built-in ones and those its users add, such as
// a web application or a printer on its LAN) and learns everyone else's, so
// the panel, the API and DNS-SD can list every service of the community.
//
// Membership and failure detection are github.com/hashicorp/memberlist (SWIM
// with the Lifeguard extensions), run over the overlay and restricted to the
// members of the community roster. Gossip carries only a small per-box
// summary in the node metadata (catalog epoch, version, entry count and hash);
// a box whose summary changed is asked for its full catalog over HTTP. A
// catalog is a document signed by the publishing box's node key (XEdDSA, see
// internal/xeddsa), so it may be fetched from the owner or from any box that
// holds a copy, and receivers check it against the roster before using it.
// Documents carry a lease: the entries of a box that is unreachable but not
// declared dead are served until the lease expires; the entries of a box that
// leaves or is declared dead disappear at once.
//
// The owner health-checks its own TCP services and marks those whose port
// stops answering as unhealthy in its next catalog version. A box that floods
// (too many entries, oversized documents, version churn) is limited, and
// every dropped document is counted by reason in the metrics.
//
// The package does not answer DNS (dnsproxy does, from [Catalog.Services]
// and [Catalog.Changed]), does not speak mDNS and does not serve the panel or
// the API: it hands out an [http.Handler] for pulls and the records.
package services
