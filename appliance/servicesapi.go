package appliance

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/services"
)

// maxServiceRequest bounds the body of POST /api/v1/services.
const maxServiceRequest = 16 << 10

// catalogSource is what the handler shows of the catalog and may change;
// *catalogService implements it.
type catalogSource interface {
	current() *services.Catalog
}

// ServiceInfo is a service in GET /api/v1/services, and the body of POST
// /api/v1/services (where only the fields up to Addr count). `cloudbox
// services` decodes it.
type ServiceInfo struct {
	Instance    string            `json:"instance"`
	Type        string            `json:"type"`
	Port        uint16            `json:"port"`
	TXT         map[string]string `json:"txt,omitempty"`
	Description string            `json:"description,omitempty"`
	Addr        string            `json:"addr,omitempty"`

	Box     string     `json:"box,omitempty"`
	BoxID   string     `json:"box_id,omitempty"`
	IPv4    string     `json:"ipv4,omitempty"`
	IPv6    string     `json:"ipv6,omitempty"`
	Healthy bool       `json:"healthy"`
	Builtin bool       `json:"builtin"`
	URL     string     `json:"url,omitempty"`
	Updated *time.Time `json:"updated,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// serviceAddr is where a record is reached: its own address, else the
// owner's overlay IPv4, else IPv6.
func serviceAddr(rec services.Record) netip.Addr {
	switch {
	case rec.Addr.IsValid():
		return rec.Addr
	case rec.OwnerIPv4.IsValid():
		return rec.OwnerIPv4
	}
	return rec.OwnerIPv6
}

// serviceURL returns a link that opens a web service, "" for others.
func serviceURL(rec services.Record) string {
	scheme := map[string]string{"_http._tcp": "http", "_https._tcp": "https"}[strings.ToLower(rec.Type)]
	if scheme == "" {
		return ""
	}
	path := rec.TXT["path"]
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := url.URL{Scheme: scheme, Host: netip.AddrPortFrom(serviceAddr(rec), rec.Port).String(), Path: path}
	return u.String()
}

func toServiceJSON(rec services.Record) ServiceInfo {
	v := ServiceInfo{
		Instance: rec.Instance, Type: rec.Type, Port: rec.Port, TXT: rec.TXT, Description: rec.Description,
		Box: rec.OwnerName, BoxID: rec.OwnerID, IPv4: addrString(rec.OwnerIPv4), IPv6: addrString(rec.OwnerIPv6),
		Healthy: rec.Healthy, Builtin: rec.Builtin, URL: serviceURL(rec),
	}
	if rec.Addr.IsValid() {
		v.Addr = rec.Addr.String()
	}
	if !rec.Updated.IsZero() {
		v.Updated = &rec.Updated
	}
	if !rec.Expires.IsZero() {
		v.Expires = &rec.Expires
	}
	return v
}

// servicesFilter reads the filter of a services listing from the query:
// type, box (node ID or name) and health ("healthy", "unhealthy").
func servicesFilter(q url.Values) (services.Filter, error) {
	f := services.Filter{Type: q.Get("type"), Owner: q.Get("box"), Health: q.Get("health")}
	switch f.Health {
	case "", "healthy", "unhealthy":
	default:
		return f, fmt.Errorf("health=%q: use healthy or unhealthy", f.Health)
	}
	return f, nil
}

// apiServices serves /api/v1/services: GET lists the community's services
// (filters ?type=_http._tcp&box=NAME&health=healthy), POST publishes a
// service of this box ({"instance", "type", "port", "txt", "description",
// "addr"}), DELETE ?type=..&instance=.. removes one. Members and
// administrators may publish and remove (see auth.go).
func (h *handler) apiServices(w http.ResponseWriter, r *http.Request) {
	var cat *services.Catalog
	if h.cfg.catalog != nil {
		cat = h.cfg.catalog.current()
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, err := servicesFilter(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
			return
		}
		out := []ServiceInfo{}
		if cat != nil {
			for _, rec := range cat.Services(f) {
				out = append(out, toServiceJSON(rec))
			}
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var req ServiceInfo
		if !decodeJSONPost(w, r, maxServiceRequest, &req,
			`{"instance": "Our wiki", "type": "_http._tcp", "port": 8080, "description": "...", "txt": {"path": "/"}}`) {
			return
		}
		svc, err := req.service()
		if err == nil {
			err = publish(cat, svc)
		}
		if err != nil {
			writeJSON(w, publishStatus(err), errorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, req)
	case http.MethodDelete:
		q := r.URL.Query()
		if err := unpublish(cat, q.Get("type"), q.Get("instance")); err != nil {
			writeJSON(w, publishStatus(err), errorResponse{Error: err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{
			Error: fmt.Sprintf("method %s not allowed on %s; use GET, POST or DELETE", r.Method, r.URL.Path),
		})
	}
}

// service returns the published part of a request.
func (v ServiceInfo) service() (services.Service, error) {
	s := services.Service{Instance: v.Instance, Type: v.Type, Port: v.Port, TXT: v.TXT, Description: v.Description}
	if v.Addr != "" {
		a, err := netip.ParseAddr(v.Addr)
		if err != nil {
			return s, fmt.Errorf("%w: addr %q is not an IP address", services.ErrInvalidService, v.Addr)
		}
		s.Addr = a
	}
	return s, s.Validate()
}

func publish(cat *services.Catalog, s services.Service) error {
	if cat == nil {
		return errCatalogNotRunning
	}
	return cat.Publish(s)
}

func unpublish(cat *services.Catalog, typ, instance string) error {
	if cat == nil {
		return errCatalogNotRunning
	}
	if typ == "" || instance == "" {
		return fmt.Errorf("%w: give the type and instance of the service to remove", services.ErrInvalidService)
	}
	return cat.Unpublish(typ, instance)
}

// publishStatus maps a Publish or Unpublish error to an HTTP status.
func publishStatus(err error) int {
	switch {
	case errors.Is(err, errCatalogNotRunning):
		return http.StatusServiceUnavailable
	case errors.Is(err, services.ErrInvalidService):
		return http.StatusBadRequest
	case errors.Is(err, services.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, services.ErrBuiltin):
		return http.StatusForbidden
	case errors.Is(err, services.ErrTooManyServices), errors.Is(err, services.ErrDocumentTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// serviceRow is a service as the services page shows it.
type serviceRow struct {
	services.Record
	Addr    string
	URL     string
	TXT     string
	Own     bool
	Builtin bool
}

// servicesPage renders the community's services like Cloudy's table:
// description, host, address, port and a link to open it; and a form to
// publish a service of this box.
func (h *handler) servicesPage(w http.ResponseWriter, r *http.Request) {
	h.renderServices(w, r, http.StatusOK, "", ServiceInfo{})
}

func (h *handler) renderServices(w http.ResponseWriter, r *http.Request, code int, formErr string, form ServiceInfo) {
	var cat *services.Catalog
	if h.cfg.catalog != nil {
		cat = h.cfg.catalog.current()
	}
	var rows []serviceRow
	if cat != nil {
		for _, rec := range cat.Services(services.Filter{}) {
			rows = append(rows, serviceRow{Record: rec, Addr: serviceAddr(rec).String(), URL: serviceURL(rec),
				TXT: strings.Join(txtStrings(rec.TXT), " "), Own: rec.OwnerID == h.cfg.node.ID(), Builtin: rec.Builtin})
		}
	}
	port := ""
	if form.Port != 0 {
		port = strconv.Itoa(int(form.Port))
	}
	h.render(w, code, h.panel.services, struct {
		pageData
		Running  bool
		Services []serviceRow
		FormErr  string
		Form     ServiceInfo
		FormPort string
	}{h.pageFor(r, "Services", "/services"), cat != nil, rows, formErr, form, port})
}

// servicesForm handles the publish and remove forms of the services page.
func (h *handler) servicesForm(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %s not allowed; use POST", r.Method), http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxServiceRequest)
	var cat *services.Catalog
	if h.cfg.catalog != nil {
		cat = h.cfg.catalog.current()
	}
	if r.PostFormValue("action") == "remove" {
		if err := unpublish(cat, r.PostFormValue("type"), r.PostFormValue("instance")); err != nil {
			h.renderServices(w, r, publishStatus(err), err.Error(), ServiceInfo{})
			return
		}
		http.Redirect(w, r, "/services", http.StatusSeeOther)
		return
	}
	form := ServiceInfo{
		Instance: strings.TrimSpace(r.PostFormValue("instance")), Type: strings.TrimSpace(r.PostFormValue("type")),
		Description: strings.TrimSpace(r.PostFormValue("description")), Addr: strings.TrimSpace(r.PostFormValue("addr")),
	}
	port, err := strconv.ParseUint(strings.TrimSpace(r.PostFormValue("port")), 10, 16)
	if err != nil || port == 0 {
		h.renderServices(w, r, http.StatusBadRequest, "port: give a number from 1 to 65535", form)
		return
	}
	form.Port = uint16(port)
	if p := strings.TrimSpace(r.PostFormValue("path")); p != "" {
		form.TXT = map[string]string{"path": p}
	}
	svc, err := form.service()
	if err == nil {
		err = publish(cat, svc)
	}
	if err != nil {
		h.renderServices(w, r, publishStatus(err), err.Error(), form)
		return
	}
	http.Redirect(w, r, "/services", http.StatusSeeOther)
}
