package appliance

import (
	"os"
	"path/filepath"
	"strings"
)

// blockInfo tells from /sys/class/block whether device is on USB and
// removable (a partition takes its disk's flag).
func blockInfo(device string) (usb, removable bool) {
	link, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", filepath.Base(device)))
	if err != nil {
		return false, false
	}
	usb = strings.Contains(link, "/usb")
	for _, dir := range []string{link, filepath.Dir(link)} {
		if b, err := os.ReadFile(filepath.Join(dir, "removable")); err == nil {
			return usb, strings.TrimSpace(string(b)) == "1"
		}
	}
	return usb, false
}
