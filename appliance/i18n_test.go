//go:build !router

package appliance

import (
	"encoding/json"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/services"
)

// templateKeyRE finds the literal texts templates translate.
var templateKeyRE = regexp.MustCompile(`\.(T|H) ("(?:[^"\\]|\\.)*")`)

// templateKeys returns the texts the panel's templates translate, and
// whether each is HTML.
func templateKeys(t *testing.T) map[string]bool {
	t.Helper()
	keys := make(map[string]bool)
	err := fs.WalkDir(templateFS, "web/templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := templateFS.ReadFile(p)
		if err != nil {
			return err
		}
		if bad := regexp.MustCompile(`\.H [^"]`).Find(b); bad != nil {
			t.Errorf("%s calls H with a text made at run time (%q): only literal texts may be HTML", p, bad)
		}
		for _, m := range templateKeyRE.FindAllSubmatch(b, -1) {
			k, err := strconv.Unquote(string(m[2]))
			if err != nil {
				t.Errorf("%s: key %s: %v", p, m[2], err)
				continue
			}
			keys[k] = string(m[1]) == "H"
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

var (
	verbRE = regexp.MustCompile(`%[sdv]`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// TestCatalogs checks that every text of the templates and of the
// navigation has a translation in every language, with the same
// formatting verbs and markup, and no translation is left over.
func TestCatalogs(t *testing.T) {
	keys := templateKeys(t)
	if len(keys) < 100 {
		t.Fatalf("only %d texts found in the templates", len(keys))
	}
	for _, it := range navItems {
		keys[it.Label] = false
		if it.Blurb != "" {
			keys[it.Blurb] = false
		}
	}
	var codes []string
	for _, l := range panelLanguages[1:] {
		codes = append(codes, l.Code)
		b, err := catalogFS.ReadFile("web/i18n/" + l.Code + ".json")
		if err != nil {
			t.Fatalf("catalog %s: %v", l.Code, err)
		}
		var c catalog
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("catalog %s: %v", l.Code, err)
		}
		for k := range keys {
			tr, ok := c[k]
			if !ok || tr == "" {
				t.Errorf("%s lacks %q", l.Code, k)
				continue
			}
			if !slices.Equal(verbRE.FindAllString(k, -1), verbRE.FindAllString(tr, -1)) {
				t.Errorf("%s: %q has other formatting verbs than %q", l.Code, tr, k)
			}
			if !slices.Equal(tagRE.FindAllString(k, -1), tagRE.FindAllString(tr, -1)) {
				t.Errorf("%s: %q has other markup than %q", l.Code, tr, k)
			}
		}
		if !maps.Equal(c, catalogs[l.Code]) {
			t.Errorf("catalog %s as loaded differs from its file", l.Code)
		}
	}
	// Every language has the same texts (Go code translates some too,
	// e.g. titles and fixed messages).
	for _, code := range codes[1:] {
		a, b := slices.Sorted(maps.Keys(catalogs[codes[0]])), slices.Sorted(maps.Keys(catalogs[code]))
		for _, k := range a {
			if _, ok := catalogs[code][k]; !ok {
				t.Errorf("%s lacks %q that %s has", code, k, codes[0])
			}
		}
		for _, k := range b {
			if _, ok := catalogs[codes[0]][k]; !ok {
				t.Errorf("%s lacks %q that %s has", codes[0], k, code)
			}
		}
	}
}

func TestParseAcceptLanguage(t *testing.T) {
	for _, c := range []struct{ h, want string }{
		{"", "en"},
		{"ca", "ca"},
		{"es-ES,es;q=0.9,en;q=0.8", "es"},
		{"fr-FR, ca;q=0.5, es;q=0.7", "es"},
		{"de, *;q=0.1", "en"},
		{"ca;q=0, es;q=0.2", "es"},
		{"en-GB;q=0.3, CA-es;q=0.9", "ca"},
		{"es;q=abc, ca;q=0.1", "ca"},
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Language", c.h)
		if got := requestLanguage(r); got != c.want {
			t.Errorf("Accept-Language %q: %s, want %s", c.h, got, c.want)
		}
	}
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Accept-Language", "es")
	r.AddCookie(&http.Cookie{Name: langCookie, Value: "ca"})
	if got := requestLanguage(r); got != "ca" {
		t.Errorf("cookie ca with Accept-Language es: %s", got)
	}
}

func FuzzParseAcceptLanguage(f *testing.F) {
	f.Add("es-ES,es;q=0.9,en;q=0.8")
	f.Add("ca;q=0, *;q=1e9")
	f.Fuzz(func(t *testing.T, h string) {
		tags := parseAcceptLanguage(h)
		if len(tags) > maxAcceptLanguage {
			t.Fatalf("%d ranges", len(tags))
		}
		for _, tag := range tags {
			if tag == "" || tag == "*" || tag != strings.ToLower(tag) {
				t.Fatalf("range %q", tag)
			}
		}
	})
}

// TestPagesInLanguages renders the wizard and every page of the panel in
// Catalan and Spanish (with texts made by Go code and for the pages'
// scripts): chosen by Accept-Language, then by the selector.
func TestPagesInLanguages(t *testing.T) {
	h, node := newTestHandler(t, "b1")
	h.cfg.overlay = &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	addTestStorage(t, h, node)
	fresh := &browser{t: t, h: h, remote: "192.0.2.11:5000"}
	resp, page := fresh.do("GET", "/setup", nil, "Accept-Language", "ca-ES,ca;q=0.9,en;q=0.5")
	wantCode(t, "GET /setup in Catalan", resp, page, http.StatusOK)
	for _, want := range []string{`<html lang="ca">`, "Configura aquesta caixa", "Codi de configuració", "Continua"} {
		if !strings.Contains(page, want) {
			t.Errorf("wizard in Catalan lacks %q", want)
		}
	}
	// A message made by Go code is translated too.
	resp, page = fresh.do("POST", "/setup", url.Values{"code": {"WRONG-CODE-0000"}}, "Accept-Language", "es")
	if !strings.Contains(page, "Este no es el código de configuración") {
		t.Errorf("wrong setup code in Spanish:\n%s", page)
	}
	b := wizard(t, h)
	// Go code's fixed message of the Calls page, while telephony is off.
	if _, page := b.do("GET", "/calls", nil, "Accept-Language", "ca"); !strings.Contains(page, "la telefonia està apagada en aquesta caixa") {
		t.Errorf("/calls without telephony in Catalan:\n%s", page)
	}
	// Telephony with an extension for admin and a room, for /calls and /room/….
	var recs []services.Record
	v := openVoIP(VoIPConfig{}, voipDeps{nodeID: "node-b1", nodeName: "b1", stateDir: t.TempDir(),
		records:  func(string) []services.Record { return recs },
		accounts: func() []account { return []account{{Name: "admin"}} }}, slog.New(slog.DiscardHandler), time.Now)
	v.rooms["0123456789abcdef01234567"] = roomEntry{Title: "Assemblea", Owner: "admin", Created: time.Now()}
	h.cfg.voip = v
	for _, c := range []struct {
		lang   string
		header string
		want   map[string][]string
	}{
		{"ca", "ca", map[string][]string{"/": {"Salut"}, "/community": {"Comunitat"}, "/services": {"Serveis"}, "/gateway": {"Passarel·la"},
			"/settings": {"Còpia de seguretat"}, "/accounts": {"Els teus testimonis"}, "/logs": {"Nivell mínim"}, "/certificate": {"Descarrega el certificat"},
			"/streams": {"En directe ara (0)", "No hi ha cap emissió en aquesta caixa.", "Les emissions en directe no funcionen"}, "/nowhere": {"No hi ha cap pàgina"},
			"/streams/golive":                {"<title>Emet en directe ·", "Publica des d&#39;OBS", `data-go-failed="No s&#39;ha pogut emetre en directe: %s"`, `data-state-connected="connectat"`},
			"/streams/watch?name=plaza":      {"<title>Mira plaza ·", `aria-label="Emissió en directe plaza"`, "Activa el so", `data-play-failed="No s&#39;ha pogut reproduir: %s"`},
			"/updates":                       {"Versions a la comunitat", "actualitzacions no funciona en aquesta caixa"},
			"/storage":                       {"Fitxers del cofre (0)", "Guarda un fitxer al cofre", `data-stored="Guardat. Testimoni de lectura`},
			"/storage/files":                 {"<title>Fitxers ·", "Aquesta carpeta és buida.", "ocupats de", `data-share-link="Enllaç per compartir: %s"`},
			"/calls":                         {"<title>Trucades ·", "Truca des d&#39;aquesta pàgina", "La teva extensió és la <strong>", `data-ready="A punt. La teva extensió és la %s."`, "Sales de conferència", "(de admin)"},
			"/room/0123456789abcdef01234567": {"<title>Assemblea ·", "No ets a la sala.", `data-join-failed="No s&#39;ha pogut entrar: %s"`}}},
		{"es", "es-AR,es;q=0.9", map[string][]string{"/": {"Salud"}, "/community": {"Comunidad"}, "/services": {"Servicios"}, "/gateway": {"Pasarela"},
			"/settings": {"Copia de seguridad"}, "/accounts": {"Tus tokens"}, "/logs": {"Nivel mínimo"}, "/certificate": {"Descarga el certificado"},
			"/streams": {"En directo ahora (0)", "No hay ninguna emisión en esta caja.", "Las emisiones en directo no funcionan"}, "/nowhere": {"No hay ninguna página"},
			"/streams/golive":                {"<title>Emitir en directo ·", "Publicar desde OBS", `data-go-failed="No se ha podido emitir en directo: %s"`, `data-not-live="sin emitir"`},
			"/streams/watch?name=plaza":      {"<title>Ver plaza ·", "Activar el sonido", `data-state-connecting="conectando"`, `data-play-failed="No se ha podido reproducir: %s"`},
			"/updates":                       {"Versiones en la comunidad", "el componente de actualizaciones no funciona en esta caja"},
			"/storage":                       {"Archivos de la bóveda (0)", "Guardar un archivo en la bóveda", `data-stored="Guardado. Token de lectura`},
			"/storage/files":                 {"<title>Archivos ·", "Esta carpeta está vacía.", "ocupados de", `data-share-link="Enlace para compartir: %s"`},
			"/calls":                         {"<title>Llamadas ·", "Llamar desde esta página", "Tu extensión es la <strong>", `data-incoming="Llamada entrante de %s"`, "Ahora no hay ninguna llamada."},
			"/room/0123456789abcdef01234567": {"<title>Assemblea ·", "No estás en la sala.", `data-left="Has salido de la sala."`}}},
	} {
		for _, path := range slices.Sorted(maps.Keys(c.want)) {
			resp, page := b.do("GET", path, nil, "Accept-Language", c.header)
			if resp.StatusCode != http.StatusOK && path != "/nowhere" {
				t.Errorf("GET %s in %s = %d", path, c.lang, resp.StatusCode)
			}
			if !strings.Contains(page, `<html lang="`+c.lang+`">`) {
				t.Errorf("GET %s in %s is not in %s:\n%s", path, c.lang, c.lang, page)
			}
			for _, want := range c.want[path] {
				if !strings.Contains(page, want) {
					t.Errorf("GET %s in %s lacks %q:\n%s", path, c.lang, want, page)
				}
			}
			// A translation with other arguments than its text shows
			// fmt's %!d(…).
			if i := strings.Index(page, "%!"); i >= 0 {
				t.Errorf("GET %s in %s has a formatting error: %s", path, c.lang, page[i:min(i+60, len(page))])
			}
		}
	}
	// The selector keeps the choice over the browser's.
	resp, page = b.do("POST", "/lang", url.Values{"lang": {"es"}, "next": {"/settings"}, "csrf": {b.csrf("/settings")}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/settings" {
		t.Fatalf("POST /lang = %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == langCookie {
			cookie = ck
		}
	}
	if cookie == nil || cookie.Value != "es" || cookie.MaxAge < 86400 {
		t.Fatalf("POST /lang cookie %v", cookie)
	}
	_, page = b.do("GET", "/settings", nil, "Accept-Language", "ca", "Cookie", sessionCookie+"="+b.cookie+"; "+langCookie+"=es")
	if !strings.Contains(page, `<html lang="es">`) || !strings.Contains(page, `<option value="es" lang="es" selected>`) {
		t.Errorf("page after choosing es:\n%s", page)
	}
	// The account keeps it: a login elsewhere gets it.
	if acc, _ := h.cfg.auth.accounts.lookup("admin"); acc.Lang != "es" {
		t.Errorf("account language %q, want es", acc.Lang)
	}
	other := &browser{t: t, h: h, remote: "192.0.2.12:5000"}
	resp, page = other.do("POST", "/login", url.Values{"username": {"admin"}, "password": {"correct horse battery"}})
	wantCode(t, "login", resp, page, http.StatusSeeOther)
	var got string
	for _, ck := range resp.Cookies() {
		if ck.Name == langCookie {
			got = ck.Value
		}
	}
	if got != "es" {
		t.Errorf("login sets language %q, want the account's es", got)
	}
	if resp, _ := b.do("POST", "/lang", url.Values{"lang": {"xx"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /lang xx = %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/lang", url.Values{"lang": {"ca"}, "next": {"//evil.example/"}}); resp.Header.Get("Location") != "/" {
		t.Errorf("POST /lang with a foreign next goes to %q", resp.Header.Get("Location"))
	}
}
