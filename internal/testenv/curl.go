package testenv

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Curl runs curl (which it requires) with args, stdin as its standard
// input when not nil, and returns the response body and the HTTP status
// code as curl prints it ("000" when no answer came). A curl that cannot
// run at all, or takes over 30 s, fails the test.
func Curl(t testing.TB, stdin []byte, args ...string) (body, code string) {
	t.Helper()
	RequireCommand(t, "curl", "curl")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	return s[:i], s[i+1:]
}
