package appliance

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capNetAdmin is the bit of CAP_NET_ADMIN in the capability sets
// (linux/capability.h).
const capNetAdmin = 12

// tunHint ends every error about the TUN device.
const tunHint = "(cloudboxd needs CAP_NET_ADMIN and /dev/net/tun)"

// checkTUN reports, before anything is started, whether this process can
// create the overlay's TUN interface: /dev/net/tun must open and the
// process must have CAP_NET_ADMIN.
func checkTUN(name string) error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("creating TUN device %s: %w %s", name, err, tunHint)
	}
	f.Close()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell; creating the device will
	}
	if ok, known := hasCapability(status, capNetAdmin); known && !ok {
		return fmt.Errorf("creating TUN device %s: this process lacks CAP_NET_ADMIN; run cloudboxd as root or grant it the capability %s", name, tunHint)
	}
	return nil
}

// hasCapability reports whether the effective set (CapEff) in a
// /proc/PID/status file holds capability bit; known is false when the file
// has no readable CapEff line.
func hasCapability(status []byte, bit uint) (ok, known bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		v, found := strings.CutPrefix(sc.Text(), "CapEff:")
		if !found {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, false
		}
		return mask&(1<<bit) != 0, true
	}
	return false, false
}
