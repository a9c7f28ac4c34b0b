package appliance

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The panel speaks English, Catalan and Spanish (Guifi.net's languages).
// Templates mark every user-visible string with the method T of pageData
// (H for a text with markup), gettext style: the English text is the key,
// e.g.
//
//	{{.T "Log in"}}  {{.T "Log in to the panel of %s." .NodeName}}  {{$.T .Label}}
//	{{.H "Written to <code>setup-code.txt</code>."}}
//
// and web/i18n/<lang>.json maps it to the translation. A text without a
// translation is shown in English. The language is
// the cookie langCookie (set by the selector in every page's footer),
// else the best of the browser's Accept-Language, else English.

// panelLanguage is a language of the panel.
type panelLanguage struct {
	Code string // BCP 47 primary subtag
	Name string // in the language itself
}

// panelLanguages are the languages of the panel; the first is the default
// and the language of the keys.
var panelLanguages = []panelLanguage{{"en", "English"}, {"ca", "Català"}, {"es", "Español"}}

// langCookie keeps the language a browser chose.
const langCookie = "cloudbox_lang"

// catalog maps English texts to their translations in one language.
type catalog map[string]string

// catalogs are the translations by language code; English has none.
var catalogs = func() map[string]catalog {
	m := make(map[string]catalog)
	for _, l := range panelLanguages[1:] {
		b, err := catalogFS.ReadFile("web/i18n/" + l.Code + ".json")
		if err != nil {
			continue // caught by TestCatalogs
		}
		var c catalog
		if json.Unmarshal(b, &c) == nil {
			m[l.Code] = c
		}
	}
	return m
}()

// knownLanguage reports whether code is a language of the panel.
func knownLanguage(code string) bool {
	return slices.ContainsFunc(panelLanguages, func(l panelLanguage) bool { return l.Code == code })
}

// requestLanguage returns the language of the panel for r.
func requestLanguage(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && knownLanguage(c.Value) {
		return c.Value
	}
	for _, tag := range parseAcceptLanguage(r.Header.Get("Accept-Language")) {
		primary, _, _ := strings.Cut(tag, "-")
		if knownLanguage(primary) {
			return primary
		}
	}
	return panelLanguages[0].Code
}

// maxAcceptLanguage bounds the ranges of Accept-Language looked at.
const maxAcceptLanguage = 32

// parseAcceptLanguage returns the language ranges of an Accept-Language
// header (RFC 9110 section 12.5.4), lowercase, by decreasing quality,
// without those of quality 0 and "*".
func parseAcceptLanguage(h string) []string {
	type ranged struct {
		tag string
		q   float64
	}
	var rs []ranged
	for i, part := range strings.Split(h, ",") {
		if i >= maxAcceptLanguage {
			break
		}
		tag, params, _ := strings.Cut(part, ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		if tag == "" || tag == "*" || len(tag) > 35 {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.TrimSpace(k) == "q" {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				q = f
			}
		}
		if q > 0 {
			rs = append(rs, ranged{tag, q})
		}
	}
	slices.SortStableFunc(rs, func(a, b ranged) int { return cmp.Compare(b.q, a.q) })
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.tag
	}
	return out
}

// lookup returns the translation of key in lang, else key.
func lookup(lang, key string) string {
	if t, ok := catalogs[lang][key]; ok && t != "" {
		return t
	}
	return key
}

// T translates the text key into the page's language and formats it with
// args; html/template escapes the result. Any text may be a key, also one
// made at run time (an error message): without a translation it stays as
// it is.
func (d pageData) T(key string, args ...any) string {
	msg := lookup(d.Lang, key)
	if len(args) > 0 {
		return fmt.Sprintf(msg, args...)
	}
	return msg
}

// H is T for a text with markup, e.g. {{.H "Read the <a href=\"/x\">guide</a>."}}:
// the text is trusted as HTML, so templates call it with literal keys
// only (TestCatalogs checks); its arguments are escaped.
func (d pageData) H(key string, args ...any) template.HTML {
	msg := lookup(d.Lang, key)
	if len(args) > 0 {
		esc := make([]any, len(args))
		for i, a := range args {
			esc[i] = html.EscapeString(fmt.Sprint(a))
		}
		msg = fmt.Sprintf(msg, esc...)
	}
	return template.HTML(msg)
}

// setLanguage answers the language selector (POST lang, next): it keeps
// the choice in a cookie for a year and goes back to the page.
func (h *handler) setLanguage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	lang := r.PostFormValue("lang")
	if !knownLanguage(lang) {
		http.Error(w, fmt.Sprintf("unknown language %q", lang), http.StatusBadRequest)
		return
	}
	setLangCookie(w, r, lang)
	// A logged-in account keeps the choice for its next logins.
	if p, ok, _ := h.cfg.auth.identify(r); ok && p.session != nil && !p.wizard && csrfOK(r, p) {
		if err := h.cfg.auth.accounts.setLang(p.account, lang); err != nil {
			h.cfg.logger.Warn("saving the language of an account failed", "account", p.account, "error", err)
		}
	}
	http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
}

// setLangCookie keeps the language lang in the browser for a year.
func setLangCookie(w http.ResponseWriter, r *http.Request, lang string) {
	http.SetCookie(w, &http.Cookie{Name: langCookie, Value: lang, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
}
