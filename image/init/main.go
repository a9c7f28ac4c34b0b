// Command init is PID 1 of a cloudbox image: gokrazy's Boot (mounts, watchdog,
// hostname, /perm) followed by supervision of the box's services. The image
// builder compiles it for the board and installs it as /gokrazy/init.
package main

import (
	"fmt"
	"os"
	"os/exec"

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
