package appliance

import (
	"context"
	"os"
	"path/filepath"

	"github.com/cloudbox/cloudbox/appliance/state"
)

// ComponentStatus is one entry of the "components" object of /api/v1/status
// and of the dashboard's component table.
type ComponentStatus struct {
	// OK reports whether the component works as intended.
	OK bool `json:"ok"`
	// Error says what is wrong and what to do about it; empty when OK.
	Error string `json:"error,omitempty"`
	// Detail holds a few component-specific facts for people, e.g. "dir"
	// for the state. Nil when there are none.
	Detail map[string]string `json:"detail,omitempty"`
}

// StatusFunc reports the current status of one component. It is called for
// every status request and dashboard view, possibly concurrently, so it must
// be cheap, safe for concurrent use and return promptly when ctx is done.
type StatusFunc func(ctx context.Context) ComponentStatus

// collectStatus calls every StatusFunc in components.
func collectStatus(ctx context.Context, components map[string]StatusFunc) map[string]ComponentStatus {
	m := make(map[string]ComponentStatus, len(components))
	for name, f := range components {
		m[name] = f(ctx)
	}
	return m
}

// stateStatus reports the state directory as OK while the node state file is
// a regular file in it.
func stateStatus(dir string) StatusFunc {
	path := filepath.Join(dir, state.FileName)
	return func(context.Context) ComponentStatus {
		s := ComponentStatus{OK: true, Detail: map[string]string{"dir": dir}}
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			s.OK, s.Error = false, "node state unavailable: "+err.Error()+
				" (check the storage; a restart creates a new identity if the file is gone)"
		case !fi.Mode().IsRegular():
			s.OK, s.Error = false, path+" is not a regular file; move it away and restart cloudboxd"
		}
		return s
	}
}
