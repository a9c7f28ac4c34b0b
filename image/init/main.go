// Command init is PID 1 of a cloudbox image: gokrazy's Boot (mounts, watchdog,
// hostname, /perm) followed by supervision of the box's services. The image
// builder compiles it for the board and installs it as /gokrazy/init.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/cloudbox/cloudbox/internal/bootslot"
	"golang.org/x/sys/unix"

	"github.com/gokrazy/gokrazy"
)

// buildTimestamp is set by the image builder from SOURCE_DATE_EPOCH.
var buildTimestamp = "unknown"

// services are started in this order and restarted when they exit (exit
// status 0 or 125 stops supervision, as in gokrazy).
var services = []string{
	"/gokrazy/randomd",
	"/gokrazy/dhcp",
	"/gokrazy/ntp",
	"/user/cloudboxd",
}

func main() {
	fmt.Println("cloudbox init, built", buildTimestamp)
	if err := gokrazy.Boot(buildTimestamp); err != nil {
		fmt.Fprintln(os.Stderr, "gokrazy.Boot:", err)
		os.Exit(1)
	}
	if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
		if n := bootslot.TrialSeconds(string(cmdline)); n > 0 {
			go trialWatchdog(time.Duration(n) * time.Second)
		}
	}
	var svcs []*gokrazy.Service
	for _, path := range services {
		cmd := exec.Command(path)
		// Go programs find time zones through ZONEINFO: the image ships Go's
		// own database, so the result does not depend on the build host.
		cmd.Env = append(os.Environ(), "ZONEINFO=/etc/zoneinfo.zip")
		svcs = append(svcs, gokrazy.NewService(cmd))
	}
	if err := gokrazy.SuperviseServices(svcs); err != nil {
		fmt.Fprintln(os.Stderr, "gokrazy.SuperviseServices:", err)
		os.Exit(1)
	}
	select {}
}

// trialWatchdog resets a trial boot (internal/bootslot) that cloudboxd has
// not committed within d: the reset clears the firmware's tryboot flag, so
// the committed slot boots again. Init does it, not cloudboxd, so that a
// cloudboxd that never starts is caught too.
func trialWatchdog(d time.Duration) {
	fmt.Println("cloudbox init: trial boot, commit within", d)
	time.Sleep(d)
	if _, err := os.Stat(bootslot.CommittedMarker); err == nil {
		return
	}
	fmt.Println("cloudbox init: the trial boot did not commit in time; resetting to the committed slot")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		fmt.Fprintln(os.Stderr, "cloudbox init: reboot:", err)
	}
}
