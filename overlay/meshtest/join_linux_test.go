package meshtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// postJoin posts an invitation to the box's join API and returns the
// status and body.
func (b *box) postJoin(t *testing.T, token string) (int, string) {
	t.Helper()
	payload, _ := json.Marshal(map[string]string{"token": token})
	resp, err := b.client.Post("http://"+apiAddr+"/api/v1/overlay/join", "application/json", strings.NewReader(string(payload)))
	if err != nil {
		t.Fatalf("POST /api/v1/overlay/join on %s: %v", b.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestJoinThroughAPI: a box started without --join joins when an
// invitation is posted to its API (what the panel's join form does), and
// an invitation that was used already is refused without stopping the
// daemon; the box can still join with another one.
func TestJoinThroughAPI(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ping", "iputils-ping")
	bin := build(t)
	sw := netnstest.New(t, "sw")
	sw.Bridge("br0")
	b1, b2, b3 := newBox(t, bin, sw, "j1", 1), newBox(t, bin, sw, "j2", 2), newBox(t, bin, sw, "j3", 3)

	cli(t, bin, "community", "init", "--state-dir", b1.dir, "--name", "joinnet", "--range", "198.18.0.0/15")
	tok2 := cli(t, bin, "invite", "--state-dir", b1.dir, "--name", "j2", "--bootstrap", "192.0.2.1:51820")
	tok3 := cli(t, bin, "invite", "--state-dir", b1.dir, "--name", "j3", "--bootstrap", "192.0.2.1:51820")
	b1.start(t)
	b2.start(t)
	b3.start(t)
	notMember(t, b2)

	if code, body := b2.postJoin(t, "cloudbox-invite:garbage"); code != http.StatusBadRequest || !strings.Contains(body, "join token") {
		t.Errorf("garbage token = %d %s, want 400 about the join token", code, body)
	}
	started := time.Now()
	if code, body := b2.postJoin(t, tok2); code != http.StatusAccepted || !strings.Contains(body, `"joining":"joinnet"`) {
		t.Fatalf("join = %d %s, want 202 joining joinnet", code, body)
	}
	if code, body := b2.postJoin(t, tok2); code != http.StatusConflict {
		t.Errorf("second join while joining = %d %s, want 409", code, body)
	}
	netnstest.WaitFor(t, 60*time.Second, func() string {
		ps, err := b2.peers()
		if err != nil || len(ps) != 2 {
			return fmt.Sprintf("j2 lists %d members (%v)", len(ps), err)
		}
		return ""
	})
	self1 := b1.self(t)
	if _, err := pingUntil(b2.ns, self1.IPv4, 30*time.Second); err != nil {
		t.Fatalf("j2 joined through the API but cannot ping j1: %v", err)
	}
	t.Logf("j2 joined through the API and pings j1 %v after the request", time.Since(started).Round(10*time.Millisecond))

	// j3 tries j2's used invitation: refused, j3 keeps running, then joins
	// with its own.
	if code, body := b3.postJoin(t, tok2); code != http.StatusAccepted {
		t.Fatalf("join with a used token = %d %s, want 202 (refused later by the members)", code, body)
	}
	netnstest.WaitFor(t, 30*time.Second, func() string {
		st := b3.overlayStatus(t)
		if !strings.HasPrefix(st.Detail["state"], "not a member") || !strings.Contains(st.Error, "ask for a new invitation") {
			return fmt.Sprintf("j3 overlay status %+v", st)
		}
		return ""
	})
	if code, body := b3.postJoin(t, tok3); code != http.StatusAccepted {
		t.Fatalf("join with its own token after a refusal = %d %s, want 202", code, body)
	}
	netnstest.WaitFor(t, 60*time.Second, func() string {
		ps, err := b3.peers()
		if err != nil || len(ps) != 3 {
			return fmt.Sprintf("j3 lists %d members (%v)", len(ps), err)
		}
		return ""
	})
	if _, err := pingUntil(b3.ns, self1.IPv4, 30*time.Second); err != nil {
		t.Fatalf("j3 cannot ping j1: %v", err)
	}
}
