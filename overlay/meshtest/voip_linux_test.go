package meshtest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/sipptest"
)

// callsInfo is the part of GET /api/v1/calls the test reads.
type callsInfo struct {
	Running bool `json:"running"`
	Calls   []struct {
		From        string `json:"from"`
		To          string `json:"to"`
		State       string `json:"state"`
		PacketsFrom uint64 `json:"packets_from"`
		PacketsTo   uint64 `json:"packets_to"`
	} `json:"calls"`
	Records []struct {
		From, To, Result string
		Duration         time.Duration
	} `json:"records"`
	Directory []struct {
		Extension, Name, Box string
	} `json:"directory"`
}

func (b *box) calls(t *testing.T) callsInfo {
	t.Helper()
	var v callsInfo
	if code, err := b.get("/api/v1/calls", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/v1/calls on %s = %d %v", b.name, code, err)
	}
	return v
}

// phoneInfo is GET /api/v1/calls/phone.
type phoneInfo struct {
	Extension, User, Password, Server string
}

// addPhoneUser creates a member account on b and returns its SIP settings.
func addPhoneUser(t *testing.T, b *box, name string) phoneInfo {
	t.Helper()
	pw := "a long enough password"
	resp, err := b.client.PostForm("http://"+apiAddr+"/accounts/edit", url.Values{"action": {"account-create"},
		"username": {name}, "role": {"member"}, "password": {pw}, "password2": {pw}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("creating account %s on %s: %v %v", name, b.name, resp, err)
	}
	resp.Body.Close()
	var p phoneInfo
	if code, err := b.get("/api/v1/calls/phone?account="+name, &p); err != nil || code != http.StatusOK || len(p.Extension) != 6 {
		t.Fatalf("GET /api/v1/calls/phone for %s on %s = %d %v %+v", name, b.name, code, err, p)
	}
	return p
}

// TestVoIPAcrossBoxes: a SIP phone (sipp) registers with box A and calls
// an extension whose phone registered with box B. A finds B in the
// catalog and proxies the call over the overlay; both boxes anchor the
// media, so G.711 RTP flows phone A -> relay A -> overlay -> relay B ->
// phone B and back. The BYE ends the call on both boxes, and both keep a
// call record.
//
//	        sw: br0
//	   ┌────────┴────────┐
//	A 192.0.2.1        B 192.0.2.2
//	cloudboxd :5060    cloudboxd :5060      overlay 198.18.0.0/15 between them
//	sipp UAC :5070     sipp UAS :5072 (registers from :5071)
func TestVoIPAcrossBoxes(t *testing.T) {
	requireTools(t, [2]string{"sipp", "sip-tester"})
	bin, sw := prepare(t)
	a := newBox(t, bin, sw, "a", 1)
	b := newBox(t, bin, sw, "b", 2)
	community(t, bin, []*box{a, b}, "192.0.2.1:51820")

	alice := addPhoneUser(t, a, "alice")
	bob := addPhoneUser(t, b, "bob")
	if alice.Extension[:4] == bob.Extension[:4] {
		t.Fatalf("both boxes have prefix %s", alice.Extension[:4])
	}
	netnstest.WaitFor(t, 90*time.Second, func() string {
		for _, e := range a.calls(t).Directory {
			if e.Extension == bob.Extension && e.Name == "bob" {
				return ""
			}
		}
		return fmt.Sprintf("%s (bob on b) not in a's directory", bob.Extension)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tone := sipptest.Tone(t, 6)
	reg := func(ns *netnstest.NS, p phoneInfo, ip, from, contact string) {
		sipptest.Start(t, ctx, ns.Command, "register.xml", map[string]string{"user": p.User, "cport": contact, "domain": "cloudbox"},
			ip+":5060", "-i", ip, "-p", from, "-au", p.User, "-ap", p.Password, "-m", "1", "-timeout", "10s").Wait(t, 15*time.Second)
	}
	reg(b.ns, bob, "192.0.2.2", "5071", "5072")
	reg(a.ns, alice, "192.0.2.1", "5070", "5070")

	uas := sipptest.Start(t, ctx, b.ns.Command, "uas.xml", map[string]string{"tone": tone},
		"-i", "192.0.2.2", "-p", "5072", "-mi", "192.0.2.2", "-mp", "6000", "-m", "1", "-timeout", "60s")
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	uac := sipptest.Start(t, ctx, a.ns.Command, "uac.xml", map[string]string{"tone": tone, "caller": alice.User, "callee": bob.Extension, "domain": "cloudbox"},
		"192.0.2.1:5060", "-i", "192.0.2.1", "-p", "5070", "-mi", "192.0.2.1", "-mp", "6000", "-m", "1", "-d", "4000", "-timeout", "60s")

	// RTP both ways through both boxes' relays.
	for _, x := range []*box{a, b} {
		netnstest.WaitFor(t, 15*time.Second, func() string {
			ci := x.calls(t)
			if len(ci.Calls) != 1 {
				return fmt.Sprintf("%s has %d calls", x.name, len(ci.Calls))
			}
			c := ci.Calls[0]
			if c.State != "active" || c.From != alice.User || c.To != bob.Extension || c.PacketsFrom < 50 || c.PacketsTo < 50 {
				return fmt.Sprintf("%s: call %+v, want active from %s to %s with >= 50 packets each way", x.name, c, alice.User, bob.Extension)
			}
			return ""
		})
	}
	t.Logf("call up with media both ways on both boxes %v after the INVITE", time.Since(start).Round(time.Millisecond))
	uac.Wait(t, 30*time.Second)
	uas.Wait(t, 10*time.Second)
	// BYE tore it down on both sides.
	for _, x := range []*box{a, b} {
		netnstest.WaitFor(t, 5*time.Second, func() string {
			ci := x.calls(t)
			if len(ci.Calls) != 0 {
				return fmt.Sprintf("%s still has calls %+v", x.name, ci.Calls)
			}
			if len(ci.Records) == 0 || ci.Records[0].Result != "answered" || ci.Records[0].Duration < 3*time.Second {
				return fmt.Sprintf("%s records %+v, want an answered call of about 4 s", x.name, ci.Records)
			}
			return ""
		})
	}
}
