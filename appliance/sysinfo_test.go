package appliance

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSysInfo(t *testing.T) {
	dir := t.TempDir()
	s := readSysInfo("testdata/sysroot", dir)
	if !s.HasLoad || s.Load1 != 0.52 || s.Load15 != 0.30 {
		t.Errorf("load = %v %v %v (%v), want 0.52 0.41 0.30", s.Load1, s.Load5, s.Load15, s.HasLoad)
	}
	if !s.HasMem || s.MemTotal != 3884152*1024 || s.MemAvailable != 1942076*1024 {
		t.Errorf("memory = %d/%d (%v)", s.MemAvailable, s.MemTotal, s.HasMem)
	}
	if !s.HasTemp || s.TempC != 51.54 {
		t.Errorf("temperature = %v (%v), want 51.54 of cpu-thermal", s.TempC, s.HasTemp)
	}
	if !s.HasUptime || s.BootUptime.Truncate(time.Second) != 93784*time.Second {
		t.Errorf("uptime = %v", s.BootUptime)
	}
	if !s.HasDisk || s.DiskTotal == 0 || s.DiskFree > s.DiskTotal {
		t.Errorf("disk = %d free of %d (%v)", s.DiskFree, s.DiskTotal, s.HasDisk)
	}
	if s := readSysInfo(t.TempDir(), dir); s.HasLoad || s.HasMem || s.HasTemp || s.HasUptime {
		t.Errorf("empty root = %+v, want nothing but the disk", s)
	}

	h, _ := newTestHandler(t, "b1")
	h.cfg.sysRoot, h.cfg.stateDir = "testdata/sysroot", dir
	resp := do(t, h, "GET", "/")
	page := body(t, resp)
	for _, want := range []string{"0.52", "50 %", "3.7 GiB", "51.5 °C", "1d 2h", "v1.2.3"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("dashboard = %d, does not show %q", resp.StatusCode, want)
		}
	}
}
