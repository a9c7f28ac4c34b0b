//go:build router

package main

import "github.com/cloudbox/cloudbox/appliance"

// profileFlags: the router profile has no storage, streaming or telephony,
// nor their flags.
func profileFlags(cfg *appliance.Config) error {
	cfg.VoIP.Disabled = true
	cfg.Stream.ICEAddr = "off"
	return nil
}

// failStart: test releases are images, not router packages.
const failStart = ""

// boxTokenFile: routers have no image with a test token.
func boxTokenFile(flagValue, stateDir string) string { return flagValue }
