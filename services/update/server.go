package update

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// PathPrefix is the prefix of every path the agent's Handler serves; the
// appliance routes it to the agent on the overlay's HTTP service only.
const PathPrefix = "/update/v1/"

func releasePath(version, file string) string { return PathPrefix + "releases/" + version + "/" + file }

func chunkPath(hash string) string { return PathPrefix + "chunks/" + hash }

// Handler serves the agent's releases and chunks to peers:
//
//	GET /update/v1/releases/{version}/manifest.json
//	GET /update/v1/releases/{version}/manifest.sig
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

func (a *Agent) serveChunk(w http.ResponseWriter, r *http.Request) {
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
