//go:build !router

package appliance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/browsertest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// newTestHTTPS returns an HTTPS service, not listening, with an authority
// in a new directory.
func newTestHTTPS(t *testing.T) *httpsService {
	t.Helper()
	ca, err := openCertAuthority(certAuthorityConfig{stateDir: t.TempDir(), node: "box", domain: "cb.home.arpa.",
		addrs: func() []netip.Addr { return nil }, now: testClock, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return newHTTPS(ca, "", nil, time.Second, slog.New(slog.DiscardHandler))
}

func verifyLeaf(ca *certAuthority, leaf *tls.Certificate, name string, at time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca.caCert)
	_, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: at})
	return err
}

func TestCertAuthority(t *testing.T) {
	dir := t.TempDir()
	now := testStart
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("fd00::1")}
	open := func() *certAuthority {
		t.Helper()
		ca, err := openCertAuthority(certAuthorityConfig{stateDir: dir, node: "Box", domain: "cb.home.arpa.",
			addrs: func() []netip.Addr { return addrs }, now: func() time.Time { return now }, logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("openCertAuthority: %v", err)
		}
		return ca
	}
	ca := open()
	leaf, err := ca.getCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"box.local", "box.cb.home.arpa", "cloudbox.local", "localhost", "192.0.2.1", "fd00::1"} {
		if err := verifyLeaf(ca, leaf, name, now); err != nil {
			t.Errorf("certificate for %s: %v", name, err)
		}
	}
	// A public address is left out: the authority may not certify it.
	for _, name := range []string{"8.8.8.8", "example.org", "box.example.org"} {
		if err := verifyLeaf(ca, leaf, name, now); err == nil {
			t.Errorf("certificate verifies for %s", name)
		}
	}
	for _, f := range []string{caCertFile, caKeyFile, leafCertFile, leafKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, TLSDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}

	// The name constraints hold even for a certificate the key signs
	// outside getCertificate.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tmpl := range []*x509.Certificate{
		{SerialNumber: serialNumber(), DNSNames: []string{"bank.example"}, NotBefore: now, NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{SerialNumber: serialNumber(), IPAddresses: []net.IP{net.ParseIP("8.8.8.8")}, NotBefore: now, NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	} {
		tmpl.Subject = pkix.Name{CommonName: "x"}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.caCert, key.Public(), ca.caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		name := "bank.example"
		if len(tmpl.IPAddresses) > 0 {
			name = "8.8.8.8"
		}
		if err := verifyLeaf(ca, &tls.Certificate{Leaf: c}, name, now); err == nil {
			t.Errorf("the authority's name constraints let a certificate for %s verify", name)
		}
	}

	// Reopening keeps the authority and the certificate.
	fp, serial := ca.fingerprint(), leaf.Leaf.SerialNumber
	ca2 := open()
	leaf2, err := ca2.getCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if ca2.fingerprint() != fp || leaf2.Leaf.SerialNumber.Cmp(serial) != 0 {
		t.Errorf("reopened authority %s leaf %v, want %s leaf %v", ca2.fingerprint(), leaf2.Leaf.SerialNumber, fp, serial)
	}
	// A new address gets a new certificate that keeps the old ones.
	addrs = append(addrs, netip.MustParseAddr("198.51.100.7"))
	leaf3, err := ca2.getCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"192.0.2.1", "198.51.100.7"} {
		if err := verifyLeaf(ca2, leaf3, name, now); err != nil {
			t.Errorf("certificate after a new address, for %s: %v", name, err)
		}
	}
	// Close to expiry, it is renewed.
	now = leaf3.Leaf.NotAfter.Add(-leafRenew + time.Hour)
	leaf4, err := ca2.getCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !leaf4.Leaf.NotAfter.After(leaf3.Leaf.NotAfter) {
		t.Errorf("certificate not renewed %v before expiry", leafRenew-time.Hour)
	}

	// A corrupt authority is an error, never silently replaced.
	if err := os.WriteFile(filepath.Join(dir, TLSDir, caKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openCertAuthority(certAuthorityConfig{stateDir: dir, node: "box", domain: "cb.home.arpa",
		addrs: func() []netip.Addr { return nil }, now: time.Now, logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Error("openCertAuthority with a corrupt key: no error")
	}
}

// runHTTPS runs a daemon with HTTP and HTTPS on loopback and returns both
// base URLs and the state directory.
func runHTTPS(t *testing.T, name string) (httpURL, httpsURL, dir string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(t, ctx, Config{StateDir: dir, Name: name, Listener: ln, HTTPSListener: tln, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	httpURL, httpsURL = "http://"+ln.Addr().String(), "https://"+tln.Addr().String()
	// Run serves HTTPS once its background component started.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", tln.Addr().String(), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("https not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return httpURL, httpsURL, dir
}

// TestHTTPS runs a daemon in host mode with HTTPS on loopback: curl trusts
// it with the box's authority (downloaded from the box) and only then, by
// IP and by the box's .local name; browsers that used HTTPS are redirected
// to it from HTTP pages, but the PAC file and the API stay on HTTP; the
// session cookie is Secure over HTTPS.
func TestHTTPS(t *testing.T) {
	curl := testenv.RequireCommand(t, "curl", "curl")
	httpURL, httpsURL, dir := runHTTPS(t, "tlsbox")
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// The authority, downloaded over HTTP as a person would.
	resp, err := client.Get(httpURL + "/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := []byte(body(t, resp))
	stored, err := os.ReadFile(filepath.Join(dir, TLSDir, caCertFile))
	if err != nil || string(stored) != string(caPEM) {
		t.Fatalf("GET /ca.pem = %q, want the stored %s (%v)", caPEM, caCertFile, err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = client.Get(httpURL + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	der := body(t, resp)
	if c, err := x509.ParseCertificate([]byte(der)); err != nil || !c.IsCA || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" {
		t.Errorf("GET /ca.crt: %v %s, want a DER CA certificate", err, resp.Header.Get("Content-Type"))
	}

	u, _ := url.Parse(httpsURL)
	port := u.Port()
	for _, c := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"by address", []string{"--cacert", caFile, httpsURL + "/healthz"}, true},
		{"by .local name", []string{"--cacert", caFile, "--resolve", "tlsbox.local:" + port + ":127.0.0.1", "https://tlsbox.local:" + port + "/healthz"}, true},
		{"by community name", []string{"--cacert", caFile, "--resolve", "tlsbox.cb.home.arpa:" + port + ":127.0.0.1", "https://tlsbox.cb.home.arpa:" + port + "/healthz"}, true},
		{"by a foreign name", []string{"--cacert", caFile, "--resolve", "example.org:" + port + ":127.0.0.1", "https://example.org:" + port + "/healthz"}, false},
		{"without the authority", []string{httpsURL + "/healthz"}, false},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--fail"}, c.args...)...).CombinedOutput()
		cancel()
		if got := err == nil && strings.TrimSpace(string(out)) == "ok"; got != c.ok {
			t.Errorf("curl %s: %v %q, want success %v", c.name, err, out, c.ok)
		}
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: client.CheckRedirect}
	t.Cleanup(tlsClient.CloseIdleConnections)
	resp, err = tlsClient.Get(httpsURL + "/certificate")
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, resp)
	var marked bool
	for _, c := range resp.Cookies() {
		marked = marked || c.Name == httpsCookie && c.Value == "1"
	}
	if !marked || !strings.Contains(page, "your browser trusts it") {
		t.Errorf("HTTPS page: cookie %v, page:\n%s", resp.Header["Set-Cookie"], page)
	}

	get := func(path string, cookie bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, httpURL+path, nil)
		if cookie {
			req.AddCookie(&http.Cookie{Name: httpsCookie, Value: "1"})
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("/login?next=%2Fservices", true); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != httpsURL+"/login?next=%2Fservices" {
		t.Errorf("HTTP page of a browser that used HTTPS = %d %q, want a redirect to %s", resp.StatusCode, resp.Header.Get("Location"), httpsURL+"/login?next=%2Fservices")
	}
	if resp := get("/login", false); resp.StatusCode == http.StatusFound {
		t.Errorf("HTTP page on a first visit redirected to %s", resp.Header.Get("Location"))
	}
	for _, p := range []string{"/proxy.pac", "/api/v1/status", "/healthz", "/ca.crt", "/certificate"} {
		if resp := get(p, true); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s over HTTP with the HTTPS cookie = %d, want 200 (stays on HTTP)", p, resp.StatusCode)
		}
	}

	// The session cookie (here of the wizard) is Secure over HTTPS only.
	codeText, err := os.ReadFile(filepath.Join(dir, "setup-code.txt"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, _ := strings.Cut(strings.TrimPrefix(string(codeText), "cloudbox setup code: "), "\n")
	for _, c := range []struct {
		client *http.Client
		base   string
		secure bool
	}{{client, httpURL, false}, {tlsClient, httpsURL, true}} {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/setup", strings.NewReader(url.Values{"code": {code}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var found bool
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie {
				found = true
				if ck.Secure != c.secure || !ck.HttpOnly {
					t.Errorf("session cookie over %s: Secure %v HttpOnly %v, want Secure %v", c.base, ck.Secure, ck.HttpOnly, c.secure)
				}
			}
		}
		if !found {
			t.Errorf("POST %s/setup = %d, no session cookie", c.base, resp.StatusCode)
		}
	}

	var info tlsInfo
	if code := getJSON(t, client, httpURL+"/api/v1/tls", testAdminToken, &info); code != http.StatusOK || info.HTTPS != u.Host || len(info.CASHA256) != 95 {
		t.Errorf("GET /api/v1/tls = %d %+v", code, info)
	}
}

// TestHTTPSBrowser opens the panel over HTTPS in headless Chromium: with
// the box's authority installed in its certificate store (NSS, as a person
// does with the certificate page's instructions) the page loads; without,
// Chromium refuses the certificate.
func TestHTTPSBrowser(t *testing.T) {
	certutil := testenv.RequireCommand(t, "certutil", "libnss3-tools")
	_, httpsURL, dir := runHTTPS(t, "tlsbrowser")
	home := t.TempDir()
	nssdb := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(nssdb, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", "sql:" + nssdb, "--empty-password"},
		{"-A", "-d", "sql:" + nssdb, "-n", "cloudbox", "-t", "C,,", "-i", filepath.Join(dir, TLSDir, caCertFile)},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	trusting := browsertest.Start(t, "env", "HOME="+home)
	page, err := trusting.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := page.Navigate(ctx, httpsURL+"/certificate"); err != nil {
		t.Fatalf("Chromium with the box's authority: %v", err)
	}
	var text string
	if err := page.Eval(ctx, `location.protocol + " " + document.title + " " + document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, "https: HTTPS certificate") || !strings.Contains(text, "your browser trusts it") {
		t.Errorf("Chromium with the box's authority shows:\n%s", text)
	}

	stranger := browsertest.Start(t, "env", "HOME="+t.TempDir())
	page, err = stranger.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = page.Navigate(ctx, httpsURL+"/certificate")
	if err == nil || !strings.Contains(err.Error(), "CERT") {
		var title string
		page.Eval(ctx, `document.title`, &title)
		t.Errorf("Chromium without the box's authority: %v, title %q; want a certificate error", err, title)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("browser test ran out of time")
	}
}

// TestHTTPSPortInUse checks that a box whose HTTPS port is taken keeps
// serving the panel over HTTP and says why HTTPS is missing.
func TestHTTPSPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(t, ctx, Config{StateDir: filepath.Join(t.TempDir(), "s"), Listener: ln, HTTPSAddr: taken.Addr().String(),
		Logger: slog.New(slog.DiscardHandler)})
	defer func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st statusResponse
		getJSON(t, client, "http://"+ln.Addr().String()+"/api/v1/status", testAdminToken, &st)
		hs := st.Components["https"]
		if !hs.OK && strings.Contains(hs.Error, "listening for https") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("https status with its port taken: %+v", hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
