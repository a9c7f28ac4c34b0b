package plainhttp

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// onlyReader hides a reader's type, so that http.NewRequest cannot know
// its length.
type onlyReader struct{ io.Reader }

// TestWriteRequestMatchesNetHTTP: writeRequest writes the bytes
// http.Request.Write writes, for the requests the daemon and the gateway
// send, and refuses what it cannot write.
func TestWriteRequestMatchesNetHTTP(t *testing.T) {
	mk := func(method, u string, body func() io.Reader, edit func(*http.Request)) func() *http.Request {
		return func() *http.Request {
			var b io.Reader
			if body != nil {
				b = body()
			}
			r, err := http.NewRequest(method, u, b)
			if err != nil {
				t.Fatal(err)
			}
			if edit != nil {
				edit(r)
			}
			return r
		}
	}
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"get", mk("GET", "http://192.0.2.1:8080/api/v1/status?x=1", nil, nil)},
		{"post known length", mk("POST", "http://[2001:db8::1]:7946/join", func() io.Reader { return strings.NewReader(`{"token":"x"}`) }, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") })},
		{"post unknown length", mk("POST", "http://example.org/up", func() io.Reader { return onlyReader{strings.NewReader("chunked body")} }, nil)},
		{"post empty", mk("POST", "http://example.org/empty", nil, nil)},
		{"no body object", mk("PUT", "http://example.org/nobody", func() io.Reader { return http.NoBody }, nil)},
		{"close", mk("GET", "http://example.org/", nil, func(r *http.Request) { r.Close = true })},
		{"user agent kept", mk("GET", "http://example.org/", nil, func(r *http.Request) { r.Header["User-Agent"] = []string{"curl/8", "second"} })},
		{"user agent none", mk("GET", "http://example.org/", nil, func(r *http.Request) { r.Header["User-Agent"] = nil })},
		{"host differs", mk("GET", "http://192.0.2.7/x", nil, func(r *http.Request) { r.Host = "svc.cb.home.arpa" })},
		{"newline in value", mk("GET", "http://example.org/", nil, func(r *http.Request) { r.Header.Set("X-A", "a\r\nInjected: 1") })},
		{"proxy style", mk("GET", "http://example.org:81/p?q=%20", nil, func(r *http.Request) {
			r.Header = http.Header{"Via": {"1.1 cloudbox"}, "Accept": {"*/*"}, "User-Agent": nil}
		})},
		{"zone", mk("GET", "http://[fe80::1%25eth0]:80/", nil, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, got bytes.Buffer
			if err := tc.req().Write(&want); err != nil {
				t.Fatal(err)
			}
			if err := writeRequest(&got, tc.req()); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("writeRequest wrote\n%q\nRequest.Write\n%q", got.String(), want.String())
			}
		})
	}

	idn := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "bücher.example", Path: "/"}, Header: http.Header{}}
	if err := writeRequest(io.Discard, idn); err == nil {
		t.Error("writeRequest wrote a non-ASCII host name")
	}
	short := &http.Request{Method: "POST", URL: &url.URL{Scheme: "http", Host: "example.org", Path: "/"}, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader("abc")), ContentLength: 5}
	if err := writeRequest(io.Discard, short); err == nil {
		t.Error("writeRequest sent a body shorter than its Content-Length")
	}
}
