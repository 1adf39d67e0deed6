package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/store"
)

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	if a.env.Ready != nil {
		if err := a.env.Ready(); err != nil {
			return fail(http.StatusServiceUnavailable, "", "not ready: %v", err)
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPI)
	return err
}

// aorParam is the {aor} of the path as user@domain.
func aorParam(r *http.Request) (user, domain string, err error) {
	user, domain, err = store.SplitAOR(r.PathValue("aor"))
	if err != nil {
		return "", "", fail(http.StatusBadRequest, "aor", "%q is not user@domain", r.PathValue("aor"))
	}
	return user, domain, nil
}

// Subscriber is a subscriber as the API shows it: never its hashes.
type Subscriber struct {
	AOR      string    `json:"aor"`
	Username string    `json:"username"`
	Domain   string    `json:"domain"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

func subscriber(u store.User) Subscriber {
	return Subscriber{AOR: u.AOR(), Username: u.Username, Domain: u.Domain, Created: u.Created.UTC(), Updated: u.Updated.UTC()}
}

func (a *API) listSubscribers(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "domain", "offset", "limit"); err != nil {
		return err
	}
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	us, err := a.env.Store.ListUsers(r.Context(), r.URL.Query().Get("domain"))
	if err != nil {
		return err
	}
	out := make([]Subscriber, len(us))
	for i, u := range us {
		out[i] = subscriber(u)
	}
	return writeJSON(w, http.StatusOK, paged(out, p))
}

// NewSubscriber is the body of POST /subscribers.
type NewSubscriber struct {
	AOR      string `json:"aor"`
	Password string `json:"password"`
}

func (a *API) createSubscriber(w http.ResponseWriter, r *http.Request) error {
	var in NewSubscriber
	if err := decode(r, &in); err != nil {
		return err
	}
	user, domain, err := store.SplitAOR(in.AOR)
	if err != nil {
		return fail(http.StatusBadRequest, "aor", "%q is not user@domain", in.AOR)
	}
	if in.Password == "" {
		return fail(http.StatusBadRequest, "password", "password is required")
	}
	u := auth.NewUser(user, domain, in.Password)
	if err := a.env.Store.AddUser(r.Context(), u); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fail(http.StatusConflict, "aor", "%s already exists", u.AOR())
		}
		return err
	}
	if u, err = a.env.Store.User(r.Context(), u.Username, u.Domain); err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/subscribers/"+u.AOR())
	return writeJSON(w, http.StatusCreated, subscriber(u))
}

func (a *API) getSubscriber(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	u, err := a.env.Store.User(r.Context(), user, domain)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, subscriber(u))
}

// Password is the body of PUT /subscribers/{aor}/password.
type Password struct {
	Password string `json:"password"`
}

func (a *API) setPassword(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	var in Password
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Password == "" {
		return fail(http.StatusBadRequest, "password", "password is required")
	}
	u := auth.NewUser(user, domain, in.Password)
	if err := a.env.Store.SetUserHashes(r.Context(), u.Username, u.Domain, u.HA1MD5, u.HA1SHA256); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) deleteSubscriber(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	if err := a.env.Store.DeleteUser(r.Context(), user, domain); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Registration is one binding (RFC 3261 §10.3).
type Registration struct {
	AOR       string    `json:"aor"`
	ID        string    `json:"id"`
	Contact   string    `json:"contact"`
	Q         float64   `json:"q"`
	Expires   time.Time `json:"expires"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	Path      string    `json:"path,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	RegID     int       `json:"reg_id,omitempty"`
	Source    string    `json:"source"`
	Local     string    `json:"local"`
	Transport string    `json:"transport"`
	UserAgent string    `json:"user_agent,omitempty"`
	Updated   time.Time `json:"updated"`
	NAT       bool      `json:"nat"`
}

func liveRegistration(b registrar.Binding) Registration {
	return Registration{AOR: b.AOR, ID: b.ID, Contact: b.Contact.String(), Q: float64(b.Q) / 1000, Expires: b.Expires.UTC(),
		CallID: b.CallID, CSeq: b.CSeq, Path: b.Path, Instance: b.Instance, RegID: b.RegID, Source: addrText(b.Source),
		Local: addrText(b.Local), Transport: b.Transport, UserAgent: b.UserAgent, Updated: b.Updated.UTC(), NAT: b.NAT}
}

func addrText(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func storedRegistration(b store.Binding) Registration {
	return Registration{AOR: b.AOR, ID: b.ID, Contact: b.Contact, Q: float64(b.Q) / 1000, Expires: b.Expires.UTC(),
		CallID: b.CallID, CSeq: b.CSeq, Path: b.Path, Instance: b.Instance, RegID: b.RegID, Source: b.Source,
		Local: b.Local, Transport: b.Transport, UserAgent: b.UserAgent, Updated: b.Updated.UTC(), NAT: b.NAT}
}

// listRegistrations answers with the registrar's live bindings of one
// AOR (?aor=), or with every binding as the store holds it: the
// registrar writes through to it behind its answers, a moment later.
func (a *API) listRegistrations(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "aor", "offset", "limit"); err != nil {
		return err
	}
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	var out []Registration
	if s := r.URL.Query().Get("aor"); s != "" {
		user, domain, err := store.SplitAOR(s)
		if err != nil {
			return fail(http.StatusBadRequest, "aor", "%q is not user@domain", s)
		}
		for _, b := range a.env.Registrar.Lookup(user + "@" + domain) {
			out = append(out, liveRegistration(b))
		}
	} else {
		bs, err := a.env.Store.Bindings(r.Context(), "", a.env.Now())
		if err != nil {
			return err
		}
		for _, b := range bs {
			out = append(out, storedRegistration(b))
		}
	}
	return writeJSON(w, http.StatusOK, paged(out, p))
}

// Unregistered is the answer of DELETE /registrations/{aor}.
type Unregistered struct {
	Removed int `json:"removed"`
}

func (a *API) unregisterAOR(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	aor := user + "@" + domain
	bs := a.env.Registrar.Lookup(aor)
	if len(bs) == 0 {
		return fail(http.StatusNotFound, "aor", "%s has no registrations", aor)
	}
	n := 0
	for _, b := range bs {
		ok, err := a.remove(b)
		if err != nil {
			return err
		}
		if ok {
			n++
		}
	}
	return writeJSON(w, http.StatusOK, Unregistered{Removed: n})
}

func (a *API) unregisterBinding(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	aor, id := user+"@"+domain, r.PathValue("id")
	for _, b := range a.env.Registrar.Lookup(aor) {
		if b.ID != id {
			continue
		}
		ok, err := a.remove(b)
		if err != nil {
			return err
		}
		if !ok {
			// Refreshed between the lookup and the removal: the UA
			// is alive and registered again.
			return fail(http.StatusConflict, "id", "binding %s was refreshed meanwhile", id)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return fail(http.StatusNotFound, "id", "%s has no binding %q", aor, id)
}

func (a *API) remove(b registrar.Binding) (bool, error) {
	ok, err := a.env.Registrar.Remove(b.AOR, b.ID, b.Updated, "api")
	switch {
	case errors.Is(err, registrar.ErrBusy):
		return false, fail(http.StatusServiceUnavailable, "", "registration store busy; try again")
	case errors.Is(err, registrar.ErrClosed):
		return ok, nil // gone from memory; the store lets it lapse
	}
	return ok, err
}

// listCDRs answers with a page of records, as JSON or CSV (?format=).
func (a *API) listCDRs(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "since", "until", "user", "status", "kind", "format", "offset", "limit"); err != nil {
		return err
	}
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f, err := acc.ParseCDRQuery(acc.CDRQuery{Since: q.Get("since"), Until: q.Get("until"), User: q.Get("user"),
		Status: q.Get("status"), Kind: q.Get("kind")}, a.env.Now())
	if err != nil {
		var fe *acc.FieldError
		if errors.As(err, &fe) {
			return fail(http.StatusBadRequest, fe.Field, "%v", err)
		}
		return fail(http.StatusBadRequest, "", "%v", err)
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		return fail(http.StatusBadRequest, "format", "format %q: want json or csv", format)
	}
	// One record more than the page says whether there is a next one.
	f.Limit = p.offset + p.limit + 1
	recs, err := a.env.Store.CDRs(r.Context(), f)
	if err != nil {
		return err
	}
	l := paged(recs, p)
	if format == "csv" {
		var b bytes.Buffer
		if err := acc.WriteCSV(&b, l.Items); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		if l.NextOffset != nil {
			w.Header().Set("X-Next-Offset", fmt.Sprint(*l.NextOffset))
		}
		_, err := w.Write(b.Bytes())
		return err
	}
	out := List[acc.JSONRecord]{Items: make([]acc.JSONRecord, len(l.Items)), Offset: l.Offset, Limit: l.Limit, NextOffset: l.NextOffset}
	for i := range l.Items {
		out.Items[i] = acc.ToJSON(&l.Items[i])
	}
	return writeJSON(w, http.StatusOK, out)
}

// Ban is a banned source (package security).
type Ban struct {
	Source  string     `json:"source"`
	Reason  string     `json:"reason"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Manual  bool       `json:"manual"`
}

func (a *API) listBans(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "offset", "limit"); err != nil {
		return err
	}
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	bs, err := a.env.Store.Bans(r.Context(), a.env.Now())
	if err != nil {
		return err
	}
	out := make([]Ban, len(bs))
	for i, b := range bs {
		out[i] = banOf(b)
	}
	return writeJSON(w, http.StatusOK, paged(out, p))
}

func banOf(b store.Ban) Ban {
	x := Ban{Source: b.Prefix.String(), Reason: b.Reason, Created: b.Created.UTC(), Manual: b.Manual}
	if !b.Expires.IsZero() {
		e := b.Expires.UTC()
		x.Expires = &e
	}
	return x
}

// NewBan is the body of POST /bans.
type NewBan struct {
	// Source is an address or a prefix.
	Source string `json:"source"`
	// For is how long, a Go duration ("30m"); "" until deleted.
	For    string `json:"for"`
	Reason string `json:"reason"`
}

func (a *API) addBan(w http.ResponseWriter, r *http.Request) error {
	var in NewBan
	if err := decode(r, &in); err != nil {
		return err
	}
	p, err := ParseBanPrefix(in.Source)
	if err != nil {
		return fail(http.StatusBadRequest, "source", "%v", err)
	}
	now := a.env.Now()
	b := store.Ban{Prefix: p, Reason: in.Reason, Created: now, Manual: true}
	if b.Reason == "" {
		b.Reason = "added through the API"
	}
	if in.For != "" {
		d, err := time.ParseDuration(in.For)
		if err != nil || d <= 0 {
			return fail(http.StatusBadRequest, "for", "for %q: want a positive duration like 30m", in.For)
		}
		b.Expires = now.Add(d)
	}
	if err := a.env.Store.PutBans(r.Context(), []store.Ban{b}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, banOf(b))
}

func (a *API) deleteBan(w http.ResponseWriter, r *http.Request) error {
	p, err := ParseBanPrefix(r.PathValue("source"))
	if err != nil {
		return fail(http.StatusBadRequest, "source", "%v", err)
	}
	if err := a.env.Store.DeleteBan(r.Context(), p); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fail(http.StatusNotFound, "source", "%s is not banned", p)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ParseBanPrefix takes an address (a /32 or /128 ban) or a prefix, as
// `hlas ban` does.
func ParseBanPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: want an IP address or a prefix", s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q: want an IP address or a prefix", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: want an IP address or a prefix", s)
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

func (a *API) getPresence(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	if a.env.Presence == nil {
		return fail(http.StatusNotImplemented, "", "presence is off (events.enabled: false)")
	}
	p := a.env.Presence(user + "@" + domain)
	if p.Publications == nil {
		p.Publications = []Publication{}
	}
	return writeJSON(w, http.StatusOK, p)
}

// MWI is an account's message-waiting counts (RFC 3842).
type MWI struct {
	AOR       string     `json:"aor,omitempty"`
	New       int        `json:"new"`
	Old       int        `json:"old"`
	UrgentNew int        `json:"urgent_new"`
	UrgentOld int        `json:"urgent_old"`
	Updated   *time.Time `json:"updated,omitempty"`
}

func (a *API) getMWI(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	aor := strings.ToLower(user + "@" + domain)
	m, err := a.env.Store.Mailbox(r.Context(), aor)
	if errors.Is(err, store.ErrNotFound) {
		return writeJSON(w, http.StatusOK, MWI{AOR: aor})
	}
	if err != nil {
		return err
	}
	u := m.Updated.UTC()
	return writeJSON(w, http.StatusOK, MWI{AOR: aor, New: m.New, Old: m.Old, UrgentNew: m.UrgentNew, UrgentOld: m.UrgentOld, Updated: &u})
}

// setMWI stores the counts; the server notifies the account's
// message-summary subscribers within a second, as after `hlas mwi set`.
func (a *API) setMWI(w http.ResponseWriter, r *http.Request) error {
	user, domain, err := aorParam(r)
	if err != nil {
		return err
	}
	var in MWI
	if err := decode(r, &in); err != nil {
		return err
	}
	aor := strings.ToLower(user + "@" + domain)
	switch {
	case in.AOR != "" && !strings.EqualFold(in.AOR, aor):
		return fail(http.StatusBadRequest, "aor", "aor %q differs from the path's", in.AOR)
	case in.New < 0 || in.UrgentNew < 0 || in.UrgentNew > in.New:
		return fail(http.StatusBadRequest, "urgent_new", "counts must not be negative, urgent_new at most new")
	case in.Old < 0 || in.UrgentOld < 0 || in.UrgentOld > in.Old:
		return fail(http.StatusBadRequest, "urgent_old", "counts must not be negative, urgent_old at most old")
	}
	m := store.Mailbox{AOR: aor, New: in.New, Old: in.Old, UrgentNew: in.UrgentNew, UrgentOld: in.UrgentOld}
	if err := a.env.Store.PutMailbox(r.Context(), m); err != nil {
		return err
	}
	in.AOR, in.Updated = aor, nil
	return writeJSON(w, http.StatusOK, in)
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) error {
	var v any = map[string]any{}
	if a.env.Stats != nil {
		v = a.env.Stats()
	}
	return writeJSON(w, http.StatusOK, v)
}

// reload applies the configuration file again (docs/reload.md): 200 with
// what was applied and what needs a restart, 400 when the file is
// refused (the running configuration stays whole).
func (a *API) reload(w http.ResponseWriter, r *http.Request) error {
	if a.env.Reload == nil {
		return fail(http.StatusNotImplemented, "", "this server has no configuration source to reload from")
	}
	rep, err := a.env.Reload()
	if errors.Is(err, ErrNoReload) {
		return fail(http.StatusNotImplemented, "", "this server has no configuration source to reload from")
	}
	if err != nil {
		return fail(http.StatusBadRequest, "", "configuration refused, nothing changed: %v", err)
	}
	return writeJSON(w, http.StatusOK, rep)
}
