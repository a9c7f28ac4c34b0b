package storage

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzRelPath: whatever path a client sends, the name handed to os.Root is
// relative, clean and has no ".." segment, or the path is refused.
func FuzzRelPath(f *testing.F) {
	for _, s := range []string{"/", "", "/a/b.txt", "/../../etc/passwd", "a/./b/../c", "/dav/%2e%2e/x", "..\\..\\win", "a\x00b", "//x//y/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, err := relPath(p)
		if err != nil {
			return
		}
		if rel != "." && (strings.HasPrefix(rel, "/") || path.Clean(rel) != rel) {
			t.Fatalf("relPath(%q) = %q, not clean and relative", p, rel)
		}
		for seg := range strings.SplitSeq(rel, "/") {
			if seg == ".." {
				t.Fatalf("relPath(%q) = %q leaves the folder", p, rel)
			}
		}
	})
}

// FuzzDestination: a Destination header with a ".." segment, raw or
// escaped, is always seen.
func FuzzDestination(f *testing.F) {
	f.Add("http://box/dav/a/../../x")
	f.Add("http://box/dav/%2e%2e/x")
	f.Add("/dav/ok")
	f.Fuzz(func(t *testing.T, d string) {
		got := destinationPath(httptestRequest(d))
		u, err := url.PathUnescape(d)
		if (hasTraversal(d) || err == nil && hasTraversal(u)) && !hasTraversal(got) {
			t.Fatalf("destination %q: %q hides its .. segment", d, got)
		}
	})
}

func httptestRequest(dest string) *http.Request {
	r, _ := http.NewRequest("MOVE", "http://box/dav/a", nil)
	r.Header.Set("Destination", dest)
	return r
}
