//go:build !router

package appliance

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// Files in TLSDir.
const (
	caCertFile   = "ca.pem"
	caKeyFile    = "ca-key.pem"
	leafCertFile = "cert.pem"
	leafKeyFile  = "key.pem"
)

// Lifetimes of the authority and the HTTPS certificate; the certificate is
// renewed when less than leafRenew is left.
const (
	caLifetime   = 20 * 365 * 24 * time.Hour
	leafLifetime = 397 * 24 * time.Hour
	leafRenew    = 30 * 24 * time.Hour
	// maxLeafSANs bounds the names and addresses one certificate
	// collects; past it the certificate starts over with the current ones.
	maxLeafSANs = 64
)

// permittedIPRanges are the only addresses the box's authority may certify
// (X.509 name constraints, RFC 5280 section 4.2.1.10): a person who
// installs it in a browser trusts it for the box's private addresses, not
// for the Internet's. Documentation and benchmark ranges are in for test
// networks.
var permittedIPRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// certAuthority is the box's own certificate authority and the HTTPS
// certificate it issues for the box's names and addresses. Browsers trust
// the box once a person installs the authority's certificate (the panel's
// /certificate page). It is safe for concurrent use.
type certAuthority struct {
	// Immutable after openCertAuthority.
	dir string
	// names are the DNS names the certificate must carry (e.g.
	// "box.local", "box.cb.home.arpa"); a client asking for one by SNI
	// gets it.
	names []string
	// addrs returns the box's current addresses; the certificate carries
	// those the authority may certify.
	addrs  func() []netip.Addr
	now    func() time.Time
	logger *slog.Logger
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey

	// mu guards the following.
	mu   sync.Mutex
	leaf *tls.Certificate // nil until the first one is loaded or issued
}

// certAuthorityConfig configures openCertAuthority.
type certAuthorityConfig struct {
	stateDir string
	node     string // the box's node name
	domain   string // the community zone, e.g. "cb.home.arpa"
	addrs    func() []netip.Addr
	now      func() time.Time
	logger   *slog.Logger
}

// openCertAuthority loads the authority from stateDir, or creates it.
func openCertAuthority(cfg certAuthorityConfig) (*certAuthority, error) {
	domain := strings.TrimSuffix(strings.ToLower(cfg.domain), ".")
	node := strings.ToLower(cfg.node)
	ca := &certAuthority{
		dir:    filepath.Join(cfg.stateDir, TLSDir),
		names:  slices.Compact([]string{node + ".local", "cloudbox.local", node + "." + domain, "localhost"}),
		addrs:  cfg.addrs,
		now:    cfg.now,
		logger: cfg.logger,
	}
	if err := os.MkdirAll(ca.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the certificate directory: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(ca.dir, caCertFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := ca.create(node, domain); err != nil {
			return nil, fmt.Errorf("creating the box's certificate authority: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("reading the box's certificate authority: %w", err)
	default:
		keyPEM, err := os.ReadFile(filepath.Join(ca.dir, caKeyFile))
		if err != nil {
			return nil, fmt.Errorf("reading the key of the box's certificate authority: %w", err)
		}
		if ca.caCert, ca.caKey, err = parseCertAndKey(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("loading the box's certificate authority from %s: %w (remove the directory to make a new one)", ca.dir, err)
		}
	}
	ca.loadLeaf()
	return ca, nil
}

// create makes a new authority, constrained to the box's names and
// private addresses, and stores it.
func (ca *certAuthority) create(node, domain string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := ca.now()
	var ipNets []*net.IPNet
	for _, p := range permittedIPRanges {
		ipNets = append(ipNets, &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	tmpl := &x509.Certificate{
		SerialNumber:                serialNumber(),
		Subject:                     pkix.Name{CommonName: "cloudbox " + node + " CA", Organization: []string{"cloudbox"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caLifetime),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"local", domain, "localhost"},
		PermittedIPRanges:           ipNets,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	if err := storePair(ca.dir, caCertFile, caKeyFile, der, key); err != nil {
		return err
	}
	ca.caCert, err = x509.ParseCertificate(der)
	ca.caKey = key
	ca.logger.Info("created the box's certificate authority", "sha256", ca.fingerprint())
	return err
}

func serialNumber() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// parseCertAndKey parses a PEM certificate and its PEM ECDSA key.
func parseCertAndKey(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("the private key is not an ECDSA key")
	}
	return pair.Leaf, key, nil
}

// storePair writes a certificate and its key to certFile and keyFile in
// dir, key first.
func storePair(dir, certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

// loadLeaf loads the stored HTTPS certificate if the authority signed it;
// otherwise the first handshake issues one.
func (ca *certAuthority) loadLeaf() {
	certPEM, err1 := os.ReadFile(filepath.Join(ca.dir, leafCertFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(ca.dir, leafKeyFile))
	if err1 != nil || err2 != nil {
		return
	}
	cert, key, err := parseCertAndKey(certPEM, keyPEM)
	if err == nil {
		err = cert.CheckSignatureFrom(ca.caCert)
	}
	if err != nil {
		ca.logger.Warn("ignoring the stored https certificate", "error", err)
		return
	}
	ca.leaf = &tls.Certificate{Certificate: [][]byte{cert.Raw, ca.caCert.Raw}, PrivateKey: key, Leaf: cert}
}

// certPEM returns the authority's certificate, PEM-encoded.
func (ca *certAuthority) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.caCert.Raw})
}

// fingerprint is the SHA-256 of the authority's certificate, as hex pairs
// separated by colons, as browsers show it.
func (ca *certAuthority) fingerprint() string {
	sum := sha256.Sum256(ca.caCert.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// permitted reports whether the authority may certify a.
func permitted(a netip.Addr) bool {
	a = a.Unmap()
	return slices.ContainsFunc(permittedIPRanges, func(p netip.Prefix) bool { return p.Contains(a) })
}

// getCertificate is tls.Config.GetCertificate: it returns a certificate
// for the box's names and every address it may certify, including the one
// the client connected to, issuing a new one when the current one lacks
// a name or address or is close to expiry.
func (ca *certAuthority) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	wantIPs := ca.addrs()
	if hello.Conn != nil {
		if ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String()); err == nil {
			wantIPs = append(wantIPs, ap.Addr().Unmap())
		}
	}
	wantIPs = slices.DeleteFunc(wantIPs, func(a netip.Addr) bool { return !permitted(a) })
	return ca.certificate(wantIPs)
}

// certificate returns a certificate valid for ca.names and ips.
func (ca *certAuthority) certificate(ips []netip.Addr) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	if l := ca.leaf; l != nil && now.Before(l.Leaf.NotAfter.Add(-leafRenew)) && covers(l.Leaf, ca.names, ips) {
		return l, nil
	}
	// Keep the addresses of the old certificate: a bookmark of an
	// address the box had a moment ago keeps working.
	all := slices.Clone(ips)
	if ca.leaf != nil {
		for _, ip := range ca.leaf.Leaf.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				all = append(all, a.Unmap())
			}
		}
	}
	slices.SortFunc(all, netip.Addr.Compare)
	all = slices.Compact(all)
	if len(all)+len(ca.names) > maxLeafSANs {
		all = ips
	}
	leaf, err := ca.issue(all, now)
	if err != nil {
		ca.logger.Error("issuing the https certificate failed", "error", err)
		return nil, fmt.Errorf("issuing the https certificate: %w", err)
	}
	ca.leaf = leaf
	return leaf, nil
}

// covers reports whether c carries every name and address.
func covers(c *x509.Certificate, names []string, ips []netip.Addr) bool {
	for _, n := range names {
		if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	for _, a := range ips {
		if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(a.AsSlice()) }) {
			return false
		}
	}
	return true
}

// issue makes and stores a certificate for ca.names and ips; the caller
// holds mu.
func (ca *certAuthority) issue(ips []netip.Addr, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(),
		Subject:      pkix.Name{CommonName: ca.names[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     ca.names,
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.caCert, key.Public(), ca.caKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := storePair(ca.dir, leafCertFile, leafKeyFile, der, key); err != nil {
		// The certificate works for this run; the next start issues another.
		ca.logger.Warn("storing the https certificate failed", "error", err)
	}
	ca.logger.Info("issued the https certificate", "names", strings.Join(ca.names, ","), "addresses", fmt.Sprint(ips))
	return &tls.Certificate{Certificate: [][]byte{der, ca.caCert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// info returns what the panel and the API show about HTTPS.
func (ca *certAuthority) info() tlsInfo {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	in := tlsInfo{CASHA256: ca.fingerprint(), CANotAfter: ca.caCert.NotAfter, CASubject: ca.caCert.Subject.CommonName}
	if l := ca.leaf; l != nil {
		in.Names = l.Leaf.DNSNames
		for _, ip := range l.Leaf.IPAddresses {
			in.Addresses = append(in.Addresses, ip.String())
		}
		in.NotAfter = l.Leaf.NotAfter
	}
	return in
}

// tlsConfig is the HTTPS server's TLS configuration.
func (ca *certAuthority) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: ca.getCertificate}
}

// caDER returns the authority's certificate, DER-encoded.
func (ca *certAuthority) caDER() []byte { return bytes.Clone(ca.caCert.Raw) }
