package appliance

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// maxTokenLabel bounds an API token's label.
const maxTokenLabel = 64

// accountsForm is what the accounts page shows after a form.
type accountsForm struct {
	Error    string
	Field    string
	Done     string // what succeeded
	NewToken string // the secret of a token just created, shown once
	NewName  string
	NewRole  string
}

// accountsPage shows the person's API tokens and password form and, to
// administrators, every account.
func (h *handler) accountsPage(w http.ResponseWriter, r *http.Request) {
	h.renderAccounts(w, r, http.StatusOK, accountsForm{})
}

func (h *handler) renderAccounts(w http.ResponseWriter, r *http.Request, code int, f accountsForm) {
	p, _ := who(r)
	a := h.cfg.auth
	var all []account
	if p.role == roleAdmin {
		all = a.accounts.accounts()
	}
	h.render(w, code, h.panel.accounts, struct {
		pageData
		Form     accountsForm
		Tokens   []apiToken
		Accounts []account
		Session  bool
	}{h.pageFor(r, "Accounts", "/accounts"), f, a.accounts.tokens(p.account), all, p.session != nil})
}

// accountsEdit handles the forms of the accounts page: action=password,
// token-create, token-delete, and for administrators account-create and
// account-delete.
func (h *handler) accountsEdit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %s not allowed; use POST", r.Method), http.StatusMethodNotAllowed)
		return
	}
	p, _ := who(r)
	a := h.cfg.auth
	fail := func(code int, field, msg string, f accountsForm) {
		f.Field, f.Error = field, msg
		h.renderAccounts(w, r, code, f)
	}
	action := r.PostFormValue("action")
	if strings.HasPrefix(action, "account-") && p.role != roleAdmin {
		h.forbidden(w, r, "Only an administrator may add or remove accounts.")
		return
	}
	switch action {
	case "password":
		if _, ok := a.authenticate(p.account, r.PostFormValue("current")); !ok {
			fail(http.StatusUnauthorized, "current", "The current password is wrong.", accountsForm{})
			return
		}
		pw := r.PostFormValue("password")
		if msg := checkNewPassword(pw, r.PostFormValue("password2")); msg != "" {
			fail(http.StatusBadRequest, "password", msg, accountsForm{})
			return
		}
		acc, _ := a.accounts.lookup(p.account)
		if err := a.accounts.setAccount(p.account, acc.Role, pw, true, h.cfg.now()); err != nil {
			fail(http.StatusInternalServerError, "", err.Error(), accountsForm{})
			return
		}
		h.renderAccounts(w, r, http.StatusOK, accountsForm{Done: "Your password was changed."})
	case "token-create":
		label := strings.TrimSpace(r.PostFormValue("label"))
		if label == "" || len(label) > maxTokenLabel {
			fail(http.StatusBadRequest, "label", fmt.Sprintf("Give the token a label of 1 to %d characters, to recognize it later.", maxTokenLabel), accountsForm{})
			return
		}
		secret, _, err := a.accounts.newToken(p.account, label, h.cfg.now())
		if err != nil {
			fail(http.StatusConflict, "label", err.Error(), accountsForm{})
			return
		}
		h.renderAccounts(w, r, http.StatusOK, accountsForm{NewToken: secret, Done: "Token created. Copy it now: it is not shown again."})
	case "token-delete":
		if err := a.accounts.deleteToken(p.account, r.PostFormValue("id")); err != nil {
			fail(http.StatusNotFound, "", err.Error(), accountsForm{})
			return
		}
		h.renderAccounts(w, r, http.StatusOK, accountsForm{Done: "Token deleted."})
	case "account-create":
		f := accountsForm{NewName: strings.TrimSpace(strings.ToLower(r.PostFormValue("username"))), NewRole: r.PostFormValue("role")}
		if f.NewRole != roleAdmin && f.NewRole != roleMember {
			fail(http.StatusBadRequest, "role", "Choose a role: member or administrator.", f)
			return
		}
		if msg := checkNewPassword(r.PostFormValue("password"), r.PostFormValue("password2")); msg != "" {
			fail(http.StatusBadRequest, "new-password", msg, f)
			return
		}
		if err := a.accounts.setAccount(f.NewName, f.NewRole, r.PostFormValue("password"), false, h.cfg.now()); err != nil {
			fail(http.StatusBadRequest, "username", err.Error(), f)
			return
		}
		h.renderAccounts(w, r, http.StatusOK, accountsForm{Done: "Account " + f.NewName + " created."})
	case "account-delete":
		name := r.PostFormValue("username")
		if err := a.accounts.deleteAccount(name); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, errNoSuchAccount) {
				code = http.StatusNotFound
			}
			fail(code, "", err.Error(), accountsForm{})
			return
		}
		a.sessions.deleteAccount(name)
		h.renderAccounts(w, r, http.StatusOK, accountsForm{Done: "Account " + name + " deleted."})
	default:
		fail(http.StatusBadRequest, "", "Unknown action.", accountsForm{})
	}
}

// authenticate checks name's password (rate-limited like the login).
func (a *authService) authenticate(name, password string) (account, bool) {
	keys := map[string]limit{"account:" + name: loginPerAccount}
	if a.limiter.wait(keys) > 0 {
		return account{}, false
	}
	acc, ok := a.accounts.authenticate(name, password)
	if !ok {
		a.limiter.fail(keys)
	}
	return acc, ok
}
