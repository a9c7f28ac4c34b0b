package appliance

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// runningRootDevice returns the block device of the running root
// filesystem when it is a squashfs slot (on a box; "" in host mode): the
// device of "/" in /proc/self/mountinfo, by its major:minor in /sys.
func runningRootDevice() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 22 1 259:2 / / ro,relatime - squashfs /dev/root ro
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) || fields[4] != "/" || fields[sep+1] != "squashfs" {
			continue
		}
		uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%s/uevent", fields[2]))
		if err != nil {
			return ""
		}
		for _, line := range strings.Split(string(uevent), "\n") {
			if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
				return "/dev/" + name
			}
		}
	}
	return ""
}
