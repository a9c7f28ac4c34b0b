//go:build !router

package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cloudbox/cloudbox/appliance"
)

// The flags of what the router profile leaves out (profile_router.go):
// storage, live streaming and telephony.
var (
	streamICE   = flag.String("stream-ice", appliance.DefaultStreamICEAddr, "UDP and TCP `ADDR` of live streams' media (WebRTC), or \"off\" to turn streaming off")
	streamTURN  = flag.String("stream-turn", ":3478", "UDP `ADDR` of the built-in TURN server for browsers behind strict firewalls, or \"off\"")
	storageOff  = flag.Bool("storage-off", false, "turn the shared folders (WebDAV at /dav/) and the vault off")
	storageDir  = flag.String("storage-dir", "", "`DIR` of the shared folders (default: storage/ in the state directory)")
	quota       = flag.Int64("storage-quota", 0, "each account's quota in `BYTES` (0: 1 GiB, -1: none)")
	vaultOffer  = flag.Int64("vault-offer", 0, "`BYTES` of vault space this box offers to the community (0: none)")
	vaultOwner  = flag.Int64("vault-owner-cap", 0, "`BYTES` of vault space one other box may use here (0: a quarter of --vault-offer; -1: no cap)")
	vaultK      = flag.Int("vault-k", 0, "shares that rebuild a vault file (0: 3)")
	vaultN      = flag.Int("vault-n", 0, "shares of a vault file, each on another box (0: 5)")
	vaultRepair = flag.Duration("vault-repair-after", 0, "how long a holder must be gone before its vault shares are rebuilt elsewhere (0: 1m)")
	vaultBackup = flag.Duration("vault-backup-every", 0, "store the box's configuration backup in the vault at least this often, and after each change (0: 24h; negative: only when an administrator asks)")
	sipAddr     = flag.String("sip", appliance.DefaultSIPAddr, "`ADDR` of SIP (UDP and TCP) for phones and calls between boxes, or \"off\"")
	rtpPorts    = flag.String("rtp-ports", "10000-20000", "UDP port `RANGE` of the calls' media relay")
	webrtcAddr  = flag.String("webrtc", ":8190", "UDP `ADDR` of browser media (softphone, rooms), or \"off\"")
)

// profileFlags sets cfg's storage, streaming and telephony from
// the flags, after flag.Parse.
func profileFlags(cfg *appliance.Config) error {
	lo, hi, ok := portRange(*rtpPorts)
	if !ok {
		return fmt.Errorf("--rtp-ports %q is not a range like 10000-20000", *rtpPorts)
	}
	cfg.VoIP = appliance.VoIPConfig{Disabled: *sipAddr == "off", SIPAddr: *sipAddr, ICEAddr: *webrtcAddr,
		RTPPortMin: lo, RTPPortMax: hi}
	cfg.Storage = appliance.StorageConfig{
		Disabled: *storageOff, Dir: *storageDir, Quota: *quota, VaultOffer: *vaultOffer, VaultOwnerCap: *vaultOwner,
		VaultK: *vaultK, VaultN: *vaultN, VaultRepairAfter: *vaultRepair, VaultBackupEvery: *vaultBackup,
	}
	cfg.Stream = appliance.StreamConfig{ICEAddr: *streamICE, TURNAddr: *streamTURN}
	return nil
}

// portRange parses "MIN-MAX".
func portRange(s string) (lo, hi uint16, ok bool) {
	a, b, found := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if !found || err1 != nil || err2 != nil || x == 0 || y < x+3 {
		return 0, 0, false
	}
	return uint16(x), uint16(y), true
}

// failStart, when set with -ldflags -X main.failStart=REASON, makes
// cloudboxd exit at once: tests build a release that never becomes healthy
// with it (image.Config.LDFlags).
var failStart string

// boxTokenFile is --api-token-file, or on a box the admin token of a test
// image (image.AdminTokenPath) when it has one.
func boxTokenFile(flagValue, stateDir string) string {
	const imageToken = "/etc/cloudbox/admin-token"
	if flagValue != "" || stateDir != appliance.DefaultStateDir {
		return flagValue
	}
	if _, err := os.Stat(imageToken); err == nil {
		return imageToken
	}
	return ""
}
