package appliance

import "time"

// TLSDir is the directory, inside the state directory, that holds the
// box's own certificate authority and its HTTPS certificate. Every file in
// it has mode 0600. Removing it makes a new authority on the next start
// (browsers must then trust the new one).
const TLSDir = "tls"

// tlsInfo is the body of GET /api/v1/tls (see README "HTTPS").
type tlsInfo struct {
	// HTTPS is the address HTTPS listens on, "" when it is off.
	HTTPS      string    `json:"https"`
	CASubject  string    `json:"ca_subject"`
	CASHA256   string    `json:"ca_sha256"`
	CANotAfter time.Time `json:"ca_not_after"`
	// Names, Addresses and NotAfter describe the current certificate;
	// empty before the first HTTPS connection.
	Names     []string  `json:"names"`
	Addresses []string  `json:"addresses"`
	NotAfter  time.Time `json:"not_after,omitzero"`
}
