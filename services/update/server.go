package update

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// PathPrefix is the prefix of every path the agent's Handler serves; the
// appliance routes it to the agent on the overlay's HTTP service only.
const PathPrefix = "/update/v1/"

func releasePath(version, file string) string { return PathPrefix + "releases/" + version + "/" + file }

// haveFile is the release file that lists the chunks held.
const haveFile = "have"

// haveBitmap returns bit i set for each distinct chunk i of m held (in the
// order of UniqueChunks, least significant bit first).
func (a *Agent) haveBitmap(m *Manifest) []byte {
	cs := m.UniqueChunks()
	bits := make([]byte, (len(cs)+7)/8)
	for i, c := range cs {
		if a.store.HasChunk(c.Hash) {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	return bits
}

func chunkPath(hash string) string { return PathPrefix + "chunks/" + hash }

// Handler serves the agent's releases and chunks to peers:
//
//	GET /update/v1/releases/{version}/manifest.json
//	GET /update/v1/releases/{version}/manifest.sig
//	GET /update/v1/releases/{version}/have   (bit i: holds the release's ith distinct chunk)
//	GET /update/v1/chunks/{sha256}
//
// At most Config.MaxUploads chunks are served at once; more requests get 503
// and ask another peer.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+"releases/{version}/{file}", func(w http.ResponseWriter, r *http.Request) {
		manifest, sigs, err := a.store.Release(r.PathValue("version"))
		if err != nil {
			http.Error(w, "no such release", http.StatusNotFound)
			return
		}
		data := manifest
		switch r.PathValue("file") {
		case haveFile:
			m, err := ParseManifest(manifest)
			if err != nil {
				http.Error(w, "cannot read release", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(a.haveBitmap(m))
			return
		case ManifestFile:
		case SignaturesFile:
			data = sigs
		default:
			http.Error(w, "no such file", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	})
	mux.HandleFunc("GET "+PathPrefix+"chunks/{hash}", a.serveChunk)
	return mux
}

// Spreading the load: a chunk served repeatChunk times within
// repeatWindow is refused with 503, so that the boxes that fetched it serve
// it to the next ones (a source with every chunk does not end up serving
// each to everybody) — unless the request says it is the last resort (the
// fetcher found no other holder in several attempts).
const (
	repeatChunk  = 2
	repeatWindow = 30 * time.Second
	// lastResortHeader marks a request that may not be refused for
	// repetition.
	lastResortHeader = "X-Cloudbox-Last-Resort"
)

// served counts recent uploads of one chunk.
type served struct {
	n     int
	since time.Time
}

// mayServe reports whether chunk hash may be served now, and counts it.
func (a *Agent) mayServe(hash string, lastResort bool) bool {
	now := time.Now()
	a.servedMu.Lock()
	defer a.servedMu.Unlock()
	if len(a.served) > 4096 {
		clear(a.served)
	}
	s := a.served[hash]
	if now.Sub(s.since) > repeatWindow {
		s = served{since: now}
	}
	if s.n >= repeatChunk && !lastResort {
		return false
	}
	s.n++
	a.served[hash] = s
	return true
}

func (a *Agent) serveChunk(w http.ResponseWriter, r *http.Request) {
	if !a.mayServe(r.PathValue("hash"), r.Header.Get(lastResortHeader) != "") {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "served recently, ask another peer", http.StatusServiceUnavailable)
		return
	}
	select {
	case a.uploads <- struct{}{}:
		defer func() { <-a.uploads }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy, ask another peer", http.StatusServiceUnavailable)
		return
	}
	f, err := a.store.OpenChunk(r.PathValue("hash"))
	if errors.Is(err, ErrNotFound) {
		http.Error(w, "no such chunk", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "cannot read chunk", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "cannot read chunk", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	buf := make([]byte, 64<<10)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if err := a.up.wait(r.Context(), n); err != nil {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			a.uploaded.Add(int64(n))
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			return
		}
	}
}
