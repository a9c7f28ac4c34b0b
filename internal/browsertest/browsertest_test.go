package browsertest

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBrowser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			r.ParseForm()
			fmt.Fprintf(w, "<!doctype html><title>posted</title><p id=got>%s</p>", r.PostFormValue("name"))
			return
		}
		fmt.Fprint(w, `<!doctype html><title>form</title><a href="#">first</a><form method=post><label for=name>Name</label><input id=name name=name><button>Send</button></form>`)
	}))
	defer srv.Close()
	b := Start(t)
	ctx := t.Context()
	p, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	// Keyboard: Tab reaches the link, then the input.
	for range 2 {
		if err := p.Press(ctx, "Tab"); err != nil {
			t.Fatal(err)
		}
	}
	var focused string
	if err := p.Eval(ctx, `document.activeElement.id`, &focused); err != nil || focused != "name" {
		t.Errorf("focus after two Tabs = %q %v, want the input", focused, err)
	}
	if err := p.Do(ctx, `document.querySelector("#name").value = "ana"; document.querySelector("button").click()`); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := p.Eval(ctx, `document.querySelector("#got").textContent`, &got); err != nil || got != "ana" {
		t.Errorf("posted page shows %q %v, want ana", got, err)
	}
	if err := p.WaitFor(ctx, time.Second, `false`); err == nil {
		t.Errorf("WaitFor(false) = nil, want a timeout")
	}
	path := filepath.Join(t.TempDir(), "shot.png")
	if err := p.Screenshot(ctx, 360, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if w := img.Bounds().Dx(); w != 360 {
		t.Errorf("screenshot is %d px wide, want 360", w)
	}
}
