// Package plainhttp is the HTTP of cloudboxd's router profile: a small
// HTTP/1.1 server and client over plain TCP, on top of net/http's types
// (Handler, Request, Response, Header) and its parsers (ReadRequest,
// ReadResponse, Request.Write).
//
// It exists for size. net/http's Server and Transport always link
// crypto/tls, its handshakes, X.509 verification and their curves, about
// 1.4 MB of a mipsle binary, whether or not TLS is ever used; a router's
// cloudboxd only speaks plain HTTP (on the LAN behind the router and over
// the encrypted overlay) and cannot afford them. NewServer and NewClient
// pick the implementation by build profile: net/http's in the full
// profile, this package's under the "router" build tag.
//
// What it does not do: TLS, HTTP/2, trailers, proxies, redirects, cookie
// jars, or connection reuse in the client (every request gets its own
// connection). The server buffers a response up to 64 KiB to send it with
// a Content-Length, then streams it, chunked unless the handler set the
// Content-Length itself. It calls ConnContext and ConnState as http.Server
// does and answers 100-continue, so the gateway's proxy runs on it too.
package plainhttp
