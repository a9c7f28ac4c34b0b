package meshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/services/update"
)

// updateInfo is the part of GET /api/v1/update the test reads.
type updateInfo struct {
	Running string `json:"running"`
	Agent   *struct {
		Releases []struct {
			Version    string `json:"version"`
			Complete   bool   `json:"complete"`
			ChunksHeld int    `json:"chunks_held"`
		} `json:"releases"`
		Downloaded int64 `json:"downloaded_bytes"`
		Uploaded   int64 `json:"uploaded_bytes"`
	} `json:"agent"`
	Community []struct {
		Box   string `json:"box"`
		Holds string `json:"holds"`
	} `json:"community"`
}

// pushRelease sends the release in dir to b's API as `cloudbox update
// push` does and returns the status and body.
func (b *box) pushRelease(t *testing.T, dir string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := update.WriteTar(&buf, dir, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := b.client.Post("http://"+apiAddr+"/api/v1/update/releases", "application/x-tar", &buf)
	if err != nil {
		t.Fatalf("pushing to %s: %v", b.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestUpdateSpreads: a release pushed into one box of three reaches the
// other two over the overlay (announced in the catalog, chunks fetched
// from the boxes that hold them); a release signed by a key the community
// does not trust is refused at the box it is pushed to and goes nowhere.
//
//	       sw: br0 192.0.2.0/24
//	  ┌──────────┼──────────┐
//	 a .1       b .2       c .3
//	(push)
func TestUpdateSpreads(t *testing.T) {
	requireTools(t)
	bin, sw := prepare(t)
	seed := sha256.Sum256([]byte("meshtest release key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	trust := update.Trust{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Threshold: 1}

	boxes := []*box{newBox(t, bin, sw, "a", 1), newBox(t, bin, sw, "b", 2), newBox(t, bin, sw, "c", 3)}
	for _, b := range boxes {
		if err := os.MkdirAll(filepath.Join(b.dir, "update"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, "update", "trust.json"), trust.Encode(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	community(t, bin, boxes, "192.0.2.1:51820")

	release := func(version string, k ed25519.PrivateKey) string {
		dir := t.TempDir()
		root := make([]byte, 3<<20+12345)
		rand.NewChaCha8([32]byte{byte(len(version))}).Read(root)
		if _, err := update.WriteRelease(dir, update.Manifest{Board: "host", Channel: update.DefaultChannel, Version: version, ChunkSize: 256 << 10},
			[]update.Input{{Name: update.RootArtifact, Data: root}, {Name: "boot/vmlinuz", Data: []byte("kernel")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := update.SignDir(dir, update.EncodePrivateKey(k)); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stranger := ed25519.NewKeyFromSeed(make([]byte, 32))
	if code, body := boxes[2].pushRelease(t, release("9.0.0", stranger)); code != http.StatusForbidden || !strings.Contains(body, "trusted") {
		t.Errorf("untrusted release pushed to c: %d %s, want 403", code, body)
	}
	start := time.Now()
	if code, body := boxes[0].pushRelease(t, release("2.0.0", key)); code != http.StatusOK {
		t.Fatalf("pushing the release to a: %d %s", code, body)
	}
	netnstest.WaitFor(t, 90*time.Second, func() string {
		for _, b := range boxes {
			var v updateInfo
			if code, err := b.get("/api/v1/update", &v); err != nil || code != http.StatusOK {
				return fmt.Sprintf("GET /api/v1/update on %s: %d %v", b.name, code, err)
			}
			if v.Agent == nil || len(v.Agent.Releases) != 1 || v.Agent.Releases[0].Version != "2.0.0" || !v.Agent.Releases[0].Complete {
				return fmt.Sprintf("%s holds %+v", b.name, v.Agent)
			}
		}
		return ""
	})
	t.Logf("release spread to 3 boxes %v after the push", time.Since(start).Round(10*time.Millisecond))
	var up, down int64
	for _, b := range boxes {
		var v updateInfo
		b.get("/api/v1/update", &v)
		up += v.Agent.Uploaded
		down += v.Agent.Downloaded
		if strings.Contains(fmt.Sprint(v.Agent.Releases), "9.0.0") {
			t.Errorf("%s holds the untrusted release", b.name)
		}
	}
	if size := int64(3<<20 + 12345 + 6); down != 2*size || up != down {
		t.Errorf("boxes downloaded %d and uploaded %d bytes, want %d each (the release once per fetching box)", down, up, 2*size)
	}
	// Every box lists the others' releases from the catalog.
	netnstest.WaitFor(t, 30*time.Second, func() string {
		var v updateInfo
		boxes[2].get("/api/v1/update", &v)
		n := 0
		for _, c := range v.Community {
			if c.Holds == "2.0.0" {
				n++
			}
		}
		if n != 3 {
			return fmt.Sprintf("c's community view: %+v", v.Community)
		}
		return ""
	})
}
