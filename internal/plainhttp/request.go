package plainhttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// requestExclude are the header fields writeRequest writes itself, as
// Request.Write does.
var requestExclude = map[string]bool{"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true}

// writeRequest writes req to w as an HTTP/1.1 client request, the way
// http.Request.Write does, except that it accepts only ASCII host names:
// Request.Write converts others to Punycode through golang.org/x/net/idna,
// whose tables are 130 KB of a mipsle binary. Browsers and the daemon send
// ASCII (IDNA-encoded) names anyway. It closes req.Body.
//
// A body is sent with its Content-Length when req.ContentLength is
// positive, not at all when req.Body is nil or http.NoBody, else chunked
// (RFC 9112, section 7.1), as net/http treats a zero ContentLength with a
// body as unknown.
func writeRequest(w io.Writer, req *http.Request) (err error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	if body != nil {
		defer func() {
			if cerr := body.Close(); err == nil && cerr != nil {
				err = cerr
			}
		}()
	}
	host := req.Host
	if host == "" {
		if req.URL == nil {
			return errors.New("plainhttp: request without URL")
		}
		host = req.URL.Host
	}
	if i := strings.LastIndex(host, "%"); i > 0 && strings.HasPrefix(host, "[") {
		// An IPv6 zone is not sent (RFC 6874, section 4).
		if j := strings.LastIndex(host, "]"); j > i {
			host = host[:i] + host[j:]
		}
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("plainhttp: host %q is not an ASCII host name", host)
		}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	for i := 0; i < len(method); i++ {
		if c := method[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("plainhttp: invalid method %q", method)
		}
	}
	ruri := req.URL.RequestURI()
	if method == http.MethodConnect && req.URL.Path == "" {
		ruri = host
	}
	if strings.ContainsAny(ruri, " \r\n") {
		return fmt.Errorf("plainhttp: invalid request URI %q", ruri)
	}

	bw, own := w.(*bufio.Writer)
	if !own {
		bw = bufio.NewWriter(w)
	}
	fmt.Fprintf(bw, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, ruri, host)
	if ua, set := req.Header["User-Agent"]; !set {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		http.Header{"User-Agent": ua[:1]}.Write(bw)
	}
	chunked := false
	switch {
	case body != nil && req.ContentLength > 0:
		bw.WriteString("Content-Length: " + strconv.FormatInt(req.ContentLength, 10) + "\r\n")
	case body != nil:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		chunked = true
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	if req.Close && !hasToken(req.Header["Connection"], "close") {
		bw.WriteString("Connection: close\r\n")
	}
	if err := req.Header.WriteSubset(bw, requestExclude); err != nil {
		return err
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		return err
	}
	switch {
	case chunked:
		cw := &chunkWriter{w: bw}
		if _, err := io.Copy(cw, body); err != nil {
			return err
		}
		if _, err := bw.WriteString("0\r\n\r\n"); err != nil {
			return err
		}
	case body != nil:
		n, err := io.Copy(bw, io.LimitReader(body, req.ContentLength))
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return fmt.Errorf("plainhttp: request body of %d bytes, Content-Length %d", n, req.ContentLength)
		}
	}
	if !own {
		return bw.Flush()
	}
	return nil
}

// chunkWriter writes each Write as one chunk.
type chunkWriter struct{ w *bufio.Writer }

func (c *chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.w.WriteString(strconv.FormatInt(int64(len(p)), 16) + "\r\n")
	c.w.Write(p)
	if _, err := c.w.WriteString("\r\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}

// hasToken reports whether the comma-separated values hold token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}
