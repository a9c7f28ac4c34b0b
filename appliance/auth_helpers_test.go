package appliance

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testAdminToken is the administrator's bearer token of newTestAuth,
// which do and post send unless a test sets Authorization itself.
const testAdminToken = "test-admin-token-0123456789abcdefghij"

// newTestAuth returns accounts in a new directory that accept
// testAdminToken (as cloudboxd --api-token-file does); setup is not done.
func newTestAuth(t *testing.T) *authService {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := newAuth(authConfig{stateDir: dir, adminTokenFile: tokenFile, now: testClock, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("newAuth: %v", err)
	}
	return a
}

func testClock() time.Time { return testStart }

// setHeaders sets hdr (name, value, ...) on req, and the test
// administrator's token unless hdr names Authorization ("" sends none).
func setHeaders(req *http.Request, hdr []string) {
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
}

// authedGet sends GET url with the test administrator's token.
func authedGet(client *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	return client.Do(req)
}

// getJSON sends GET url with the bearer token (none if "") and decodes
// the answer into v; it returns the status code.
func getJSON(t *testing.T, client *http.Client, url, token string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", url, err)
	}
	return resp.StatusCode
}
