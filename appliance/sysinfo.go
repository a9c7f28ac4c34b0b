package appliance

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sysInfo is the box's health as the dashboard shows it. Fields whose
// source is missing (another OS, no thermal sensor) are zero with their
// Has flag false.
type sysInfo struct {
	CPUs                 int
	Load1, Load5, Load15 float64
	HasLoad              bool

	MemTotal, MemAvailable uint64 // bytes
	HasMem                 bool

	DiskTotal, DiskFree uint64 // bytes, of the state directory's file system
	HasDisk             bool

	TempC   float64
	HasTemp bool

	BootUptime time.Duration
	HasUptime  bool
}

// readSysInfo reads the health from the proc and sys file systems under
// root ("/" on a box; tests pass a directory) and statfs of stateDir.
func readSysInfo(root, stateDir string) sysInfo {
	s := sysInfo{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile(filepath.Join(root, "proc/loadavg")); err == nil {
		s.Load1, s.Load5, s.Load15, s.HasLoad = parseLoadavg(b)
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/meminfo")); err == nil {
		s.MemTotal, s.MemAvailable, s.HasMem = parseMeminfo(b)
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/uptime")); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if sec, err := strconv.ParseFloat(f[0], 64); err == nil {
				s.BootUptime, s.HasUptime = time.Duration(sec*float64(time.Second)), true
			}
		}
	}
	s.TempC, s.HasTemp = readTemperature(filepath.Join(root, "sys/class/thermal"))
	s.DiskTotal, s.DiskFree, s.HasDisk = diskSpace(stateDir)
	return s
}

func parseLoadavg(b []byte) (l1, l5, l15 float64, ok bool) {
	f := bytes.Fields(b)
	if len(f) < 3 {
		return 0, 0, 0, false
	}
	var v [3]float64
	for i := range v {
		x, err := strconv.ParseFloat(string(f[i]), 64)
		if err != nil {
			return 0, 0, 0, false
		}
		v[i] = x
	}
	return v[0], v[1], v[2], true
}

// parseMeminfo returns MemTotal and MemAvailable of /proc/meminfo.
func parseMeminfo(b []byte) (total, avail uint64, ok bool) {
	var haveTotal, haveAvail bool
	for line := range strings.Lines(string(b)) {
		name, rest, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "MemTotal":
			total, haveTotal = kb*1024, true
		case "MemAvailable":
			avail, haveAvail = kb*1024, true
		}
	}
	return total, avail, haveTotal && haveAvail
}

// readTemperature returns the temperature of the CPU's thermal zone (on a
// Raspberry Pi "cpu-thermal"), else of the first zone that reads.
func readTemperature(dir string) (float64, bool) {
	zones, _ := filepath.Glob(filepath.Join(dir, "thermal_zone*"))
	slices.SortStableFunc(zones, func(a, b string) int {
		return zonePriority(a) - zonePriority(b)
	})
	for _, z := range zones {
		b, err := os.ReadFile(filepath.Join(z, "temp"))
		if err != nil {
			continue
		}
		milli, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			continue
		}
		return float64(milli) / 1000, true
	}
	return 0, false
}

func zonePriority(zone string) int {
	b, _ := os.ReadFile(filepath.Join(zone, "type"))
	if t := strings.TrimSpace(string(b)); strings.Contains(t, "cpu") || t == "x86_pkg_temp" {
		return 0
	}
	return 1
}

// percent formats part of whole as a percentage.
func percent(part, whole uint64) string {
	if whole == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(part)/float64(whole))
}
