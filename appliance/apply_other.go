//go:build !linux || router

// Routers run cloudbox as an OpenWrt package, without root slots to switch:
// their releases replace the daemon's binary (routerinstall.go).

package appliance

import "errors"

// openSlotDisk finds no slots off Linux: updates are held and served only.
func openSlotDisk() (slotDisk, bool, error) { return slotDisk{}, false, nil }

func rebootBox(tryboot, pi bool, why string) error {
	return errors.New("reboot is not supported on this system")
}

func markTrialCommitted() error { return nil }
