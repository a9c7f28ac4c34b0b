package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/browsertest"
)

// storageBrowser drives the Storage pages of box, whose admin is logged
// in (part of TestPanelBrowser): upload in the file browser (the page's
// XMLHttpRequest PUT over WebDAV with the session), a new folder, a share
// link fetched back, rename and delete.
func storageBrowser(t *testing.T, p *browsertest.Page, box *panelBox, shots string) {
	t.Helper()
	ctx := t.Context()
	if err := p.Navigate(ctx, box.url+"/storage/files"); err != nil {
		t.Fatal(err)
	}
	checkAccessible(t, p, box.name+" files")
	const content = "hello from the browser"
	if err := p.Do(ctx, `(() => { const dt = new DataTransfer();
		dt.items.add(new File([`+js(content)+`], "hello.txt", {type: "text/plain"}));
		document.querySelector("#upload-file").files = dt.files;
		document.querySelector("#upload button").click(); })()`); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 10*time.Second, `document.querySelector('tr[data-name="hello.txt"]') !== null`); err != nil {
		t.Fatalf("upload: %v\n%s", err, text(t, p, "main"))
	}
	fill(t, p, map[string]string{"#mkdir-name": "photos"}, "#mkdir button")
	if err := p.WaitFor(ctx, 10*time.Second, `document.querySelector('tr[data-name="photos"] a[href*="path="]') !== null`); err != nil {
		t.Fatalf("new folder: %v\n%s", err, text(t, p, "main"))
	}
	shoot(t, p, shots, box.name+"-storage-files")

	// A share link, fetched without the session.
	if err := p.Eval(ctx, `document.querySelector('tr[data-name="hello.txt"] button[data-act="share"]').click()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 10*time.Second, `document.querySelector("#result").textContent.includes("/s/")`); err != nil {
		t.Fatalf("share link: %v\n%s", err, text(t, p, "#result"))
	}
	var got string
	if err := p.Eval(ctx, `fetch(document.querySelector("#result").textContent.replace(/^.* /, ""), {credentials: "omit"}).then(r => r.text())`, &got); err != nil || got != content {
		t.Fatalf("share link gave %q %v, want %q", got, err, content)
	}

	// Rename, then delete (the page asks with prompt and confirm).
	if err := p.Do(ctx, `window.prompt = () => "renamed.txt";
		document.querySelector('tr[data-name="hello.txt"] button[data-act="rename"]').click()`); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 10*time.Second, `document.querySelector('tr[data-name="renamed.txt"]') !== null && document.querySelector('tr[data-name="hello.txt"]') === null`); err != nil {
		t.Fatalf("rename: %v\n%s", err, text(t, p, "main"))
	}
	if err := p.Do(ctx, `window.confirm = () => true;
		document.querySelector('tr[data-name="renamed.txt"] button[data-act="delete"]').click()`); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 10*time.Second, `document.querySelector('tr[data-name="renamed.txt"]') === null`); err != nil {
		t.Fatalf("delete: %v\n%s", err, text(t, p, "main"))
	}

	if err := p.Navigate(ctx, box.url+"/storage"); err != nil {
		t.Fatal(err)
	}
	checkAccessible(t, p, box.name+" storage")
	shoot(t, p, shots, box.name+"-storage")
	if got := text(t, p, "main"); !strings.Contains(got, "Vault files") || !strings.Contains(got, "offers no vault space") {
		t.Errorf("storage page of %s: %s", box.name, got)
	}
}
