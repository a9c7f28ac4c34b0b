package appliance

import (
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// trialWatchdogScript is the shell program of startTrialWatchdog. It
// kills process $4 when, $1 seconds on, the state file $2 still has
// version $3 on trial and the process does not run the committed binary
// $5: a trial that hangs (alive but stuck) never commits nor rolls back by
// itself, and procd respawns the old binary only once the process ends.
// A trial that committed runs $5 (bin.new was renamed to it). It checks
// the state every second and ends as soon as the trial did (committed,
// rolled back, or the state is gone), so it lingers no longer than that.
const trialWatchdogScript = `(
secs=$1 state=$2 version=$3 pid=$4 bin=$5
on_trial() { grep -qF '"phase": "trying"' "$state" && grep -qF "\"version\": \"$version\"" "$state"; }
i=0
while [ "$i" -lt "$secs" ]; do
	sleep 1
	on_trial || exit 0
	i=$((i + 1))
done
if [ "$(readlink "/proc/$pid/exe")" != "$bin" ]; then
	echo "cloudboxd: version $version did not commit within its trial time: stopping it" >/dev/kmsg 2>/dev/null
	kill -9 "$pid"
fi
) </dev/null >/dev/null 2>&1 &`

// startTrialWatchdog starts, detached (the shell that starts it exits at
// once, so it belongs to init and outlives an exec or a crash of pid), a
// watchdog that stops process pid after wait unless its trial of version
// ended (see trialWatchdogScript).
func startTrialWatchdog(wait time.Duration, stateFile, version string, pid int, bin string) error {
	secs := strconv.Itoa(int((wait + time.Second - 1) / time.Second))
	cmd := exec.Command("/bin/sh", "-c", trialWatchdogScript, "cloudbox-trial-watchdog", secs, stateFile, version, strconv.Itoa(pid), bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("starting the trial watchdog: %v: %s", err, out)
	}
	return nil
}
