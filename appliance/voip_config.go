package appliance

import (
	"time"

	"github.com/cloudbox/cloudbox/services"
)

// Defaults of VoIPConfig.
const (
	// DefaultSIPAddr is where phones register and boxes send each other
	// calls (UDP and TCP).
	DefaultSIPAddr = ":5060"
	// DefaultCallRecordDays is how long call detail records are kept.
	DefaultCallRecordDays = 90
)

const (
	// voipType is the catalog type of extensions and of a box's exchange.
	voipType = "_sip._udp"
	// VoIPDir is the directory, inside the state directory, of the
	// extensions and the call records.
	VoIPDir      = "voip"
	voipRetry    = 10 * time.Second
	voipTick     = 10 * time.Second
	voipRecent   = 200 // records kept in memory for the API
	voipMaxUsers = 99  // per box: two digits after the box's prefix
	// voipMaxEntries bounds the extensions a box publishes (the catalog
	// takes 64 services per box, built-in ones included).
	voipMaxEntries = 40
	// voipCallRate is how many calls per second one address may start
	// (a box forwards all its users' calls from one).
	voipCallRate = 20
)

// VoIPConfig configures the community telephony (package stream/voip): a
// SIP registrar and proxy with a media relay, extensions for the box's
// accounts published in the catalog. The zero value runs it on
// DefaultSIPAddr.
type VoIPConfig struct {
	// Disabled turns telephony off.
	Disabled bool
	// SIPAddr is the UDP and TCP address of SIP; zero means DefaultSIPAddr.
	SIPAddr string
	// RTPPortMin and RTPPortMax bound the media relay's UDP ports; zero
	// means voip.DefaultRelayPortMin and voip.DefaultRelayPortMax.
	RTPPortMin, RTPPortMax uint16
	// RecordDays is how many days call detail records are kept; zero means
	// DefaultCallRecordDays.
	RecordDays int
	// MediaTimeout ends a call whose media stopped; zero means
	// voip.DefaultMediaTimeout.
	MediaTimeout time.Duration
	// ICEAddr is the UDP address of browser media (the softphone on the
	// Calls page, WebRTC); zero means voip.DefaultICEAddr, "off" none.
	ICEAddr string
}

// voipDeps is what telephony reads from the rest of the daemon.
type voipDeps struct {
	nodeID, nodeName string
	stateDir         string
	// records returns the catalog's services of a type (nil while the
	// catalog does not run).
	records func(typ string) []services.Record
	// accounts returns the box's accounts.
	accounts func() []account
}
