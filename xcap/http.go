package xcap

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/hlas-voip/hlas/xcap/internal/xmltree"
)

// maxAttempts bounds the read-edit-write rounds of one unconditional
// request that loses the compare-and-set to other writers.
const maxAttempts = 8

// target is what an XCAP URI names (RFC 4825 §6).
type target struct {
	auid *AUID // nil for xcap-caps
	caps bool  // the global xcap-caps index
	// user is the store key of the XUI ("alice@example.com"), domain its
	// host part (the digest realm); doc the document's path under the
	// user's directory.
	user, domain, doc string
	// userPath and docPath are the escaped paths of the user's directory
	// and of the document, for the URIs of no-parent errors.
	userPath, docPath string
	sel               *selector // nil: the whole document
	ns                map[string]string
}

// ServeHTTP answers XCAP requests (RFC 4825 §7, §8): GET, PUT and DELETE of
// documents, elements and attributes, GET of namespace bindings and of the
// xcap-caps document.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, status, msg := s.route(r)
	if status != 0 {
		plain(w, status, msg)
		return
	}
	allow := "GET, PUT, DELETE"
	if t.caps || (t.sel != nil && t.sel.term == termNamespace) {
		allow = "GET"
	}
	if r.Method != http.MethodGet && (allow == "GET" || (r.Method != http.MethodPut && r.Method != http.MethodDelete)) {
		w.Header().Set("Allow", allow)
		plain(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if r.ContentLength > int64(s.cfg.MaxDocument) {
		plain(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	realm := t.domain
	if t.caps {
		realm = hostOf(r.Host)
	}
	res := s.authenticate(r, realm)
	if !res.ok {
		s.challenge(w, realm, res.stale)
		return
	}
	if !t.caps && res.user != t.user {
		plain(w, http.StatusForbidden, "these are not your documents")
		return
	}
	switch {
	case t.caps:
		s.get(w, r, t, s.caps, s.capsET, capsContentType, capsNamespace)
	case r.Method == http.MethodGet:
		body, etag, err := t.auid.Store.Document(r.Context(), t.auid.Name, t.user, t.doc)
		switch {
		case errors.Is(err, ErrNotFound):
			plain(w, http.StatusNotFound, "no such document")
			return
		case err != nil:
			s.log.Error("read document", "auid", t.auid.Name, "user", t.user, "doc", t.doc, "err", err)
			plain(w, http.StatusInternalServerError, "store unavailable")
			return
		}
		s.get(w, r, t, body, etag, t.auid.ContentType, t.auid.Namespace)
	default:
		s.write(w, r, t)
	}
}

// route parses the request URI.
func (s *Server) route(r *http.Request) (target, int, string) {
	var t target
	p := r.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		p = r.URL.EscapedPath() // absolute-form request target
	}
	root := s.cfg.Root + "/"
	if !strings.HasPrefix(p, root) {
		return t, http.StatusNotFound, "not under the XCAP root"
	}
	segs := strings.Split(p[len(root):], "/")
	if len(segs) < 3 {
		return t, http.StatusNotFound, "no such document"
	}
	sep := -1
	for i := 2; i < len(segs); i++ {
		if segs[i] == "~~" {
			sep = i
			break
		}
	}
	docSegs := segs[2:]
	if sep >= 0 {
		docSegs = segs[2:sep]
	}
	auid, err := url.PathUnescape(segs[0])
	if err != nil {
		return t, http.StatusNotFound, "no such application usage"
	}
	switch {
	case auid == capsAUID:
		if segs[1] != "global" || len(docSegs) != 1 || docSegs[0] != capsDocument {
			return t, http.StatusNotFound, "no such document"
		}
		t.caps = true
		t.docPath = root + strings.Join(segs[:3], "/")
	case s.auids[auid] == nil:
		return t, http.StatusNotFound, "no such application usage"
	case segs[1] != "users":
		return t, http.StatusNotFound, "no such document"
	default:
		t.auid = s.auids[auid]
		if len(docSegs) < 2 {
			return t, http.StatusNotFound, "no such document"
		}
		xui, err := url.PathUnescape(docSegs[0])
		if err != nil {
			return t, http.StatusNotFound, "bad XUI"
		}
		user, domain, ok := parseXUI(xui)
		if !ok {
			return t, http.StatusNotFound, "bad XUI"
		}
		t.user, t.domain = user+"@"+domain, domain
		names := make([]string, len(docSegs)-1)
		for i, seg := range docSegs[1:] {
			n, err := url.PathUnescape(seg)
			if err != nil || n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
				return t, http.StatusNotFound, "no such document"
			}
			names[i] = n
		}
		t.doc = strings.Join(names, "/")
		t.userPath = root + strings.Join(segs[:3], "/") + "/"
		t.docPath = root + strings.Join(segs[:2+len(docSegs)], "/")
	}
	if sep >= 0 {
		raw := strings.Join(segs[sep+1:], "/")
		sel, err := url.PathUnescape(raw)
		if err != nil {
			return t, http.StatusBadRequest, "bad node selector"
		}
		if t.sel, err = parseSelector(sel); err != nil {
			return t, http.StatusBadRequest, err.Error()
		}
		q, err := url.PathUnescape(r.URL.RawQuery)
		if err != nil {
			return t, http.StatusBadRequest, "bad namespace bindings"
		}
		if t.ns, err = parseBindings(q); err != nil {
			return t, http.StatusBadRequest, err.Error()
		}
	}
	return t, 0, ""
}

// parseXUI reads the user and domain of an XUI, a SIP or SIPS URI
// ("sip:alice@example.com") or a bare user@domain, in lower case.
func parseXUI(x string) (user, domain string, ok bool) {
	if scheme, rest, found := strings.Cut(x, ":"); found && (strings.EqualFold(scheme, "sip") || strings.EqualFold(scheme, "sips")) {
		x = rest
	}
	at := strings.LastIndexByte(x, '@')
	if at <= 0 {
		return "", "", false
	}
	user, host := x[:at], x[at+1:]
	if i := strings.IndexAny(host, ";?"); i >= 0 {
		host = host[:i]
	}
	host = hostOf(host)
	if host == "" || strings.ContainsAny(host, "/@ ") || strings.ContainsAny(user, "/ ") {
		return "", "", false
	}
	return strings.ToLower(user), host, true
}

// hostOf returns the host of a host[:port], in lower case.
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		hostport = h
	}
	return strings.ToLower(strings.Trim(hostport, "[]"))
}

// get answers a GET of the document body or a node of it.
func (s *Server) get(w http.ResponseWriter, r *http.Request, t target, body []byte, etag, contentType, defaultNS string) {
	if !ifMatchHolds(r.Header, true, etag) {
		plain(w, http.StatusPreconditionFailed, "entity tag does not match")
		return
	}
	if ifNoneMatchFails(r.Header, true, etag) {
		w.Header().Set("ETag", quoteETag(etag))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if t.sel == nil {
		respond(w, http.StatusOK, contentType, etag, body)
		return
	}
	d, err := parseDoc(body)
	if err != nil {
		s.log.Error("stored document does not parse", "user", t.user, "doc", t.doc, "err", err)
		plain(w, http.StatusInternalServerError, "stored document unreadable")
		return
	}
	out, err := selectNode(d, t.sel, names{defaultNS, t.ns})
	switch {
	case errors.Is(err, ErrNotFound):
		plain(w, http.StatusNotFound, "no such node")
		return
	case errors.Is(err, ErrSelector):
		plain(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		plain(w, http.StatusInternalServerError, "internal error")
		return
	}
	ct := ElementContentType
	switch t.sel.term {
	case termAttribute:
		ct = AttributeContentType
	case termNamespace:
		ct = NamespaceContentType
	}
	respond(w, http.StatusOK, ct, etag, out)
}

// outcome is the answer to a write.
type outcome struct {
	status int
	etag   string
	msg    string // of an answer without an xcap-error
	xerr   *Error // answered 409
}

// write answers PUT and DELETE: read the document, edit it, write it back
// on the condition that it is unchanged, and start over when another
// writer came first, so that no edit is lost.
func (s *Server) write(w http.ResponseWriter, r *http.Request, t target) {
	var body []byte
	if r.Method == http.MethodPut {
		want := t.auid.ContentType
		if t.sel != nil {
			want = ElementContentType
			if t.sel.term == termAttribute {
				want = AttributeContentType
			}
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || !strings.EqualFold(mt, want) {
			plain(w, http.StatusUnsupportedMediaType, "Content-Type must be "+want)
			return
		}
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxDocument)))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			plain(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		case err != nil:
			plain(w, http.StatusBadRequest, "cannot read the body")
			return
		}
		if t.sel == nil {
			if xe := s.validate(t.auid, body); xe != nil {
				s.conflict(w, xe)
				return
			}
		}
	}
	mu := s.lock(t.auid.Name, t.user, t.doc)
	mu.Lock()
	o := s.commit(r, t, body)
	mu.Unlock()
	switch {
	case o.xerr != nil:
		s.conflict(w, o.xerr)
		return
	case o.msg != "":
		plain(w, o.status, o.msg)
		return
	}
	s.log.Debug("write", "method", r.Method, "auid", t.auid.Name, "user", t.user, "doc", t.doc, "status", o.status)
	if s.env.OnChange != nil {
		s.env.OnChange(t.auid.Name, t.user, t.doc)
	}
	if o.etag != "" {
		w.Header().Set("ETag", quoteETag(o.etag))
	}
	w.WriteHeader(o.status)
}

// commit runs the read-edit-write rounds of a write.
func (s *Server) commit(r *http.Request, t target, body []byte) outcome {
	ctx := r.Context()
	st := t.auid.Store
	conditional := r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != ""
	for attempt := 1; ; attempt++ {
		cur, etag, err := st.Document(ctx, t.auid.Name, t.user, t.doc)
		exists := err == nil
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				return s.storeFailed(t, "read", err)
			}
			etag = ""
		}
		if !ifMatchHolds(r.Header, exists, etag) || ifNoneMatchFails(r.Header, exists, etag) {
			return outcome{status: http.StatusPreconditionFailed, msg: "entity tag does not match"}
		}
		var next []byte
		created := !exists
		switch {
		case t.sel == nil && r.Method == http.MethodPut:
			next = body
		case t.sel == nil:
			if !exists {
				return outcome{status: http.StatusNotFound, msg: "no such document"}
			}
		case !exists && r.Method == http.MethodPut:
			return outcome{xerr: &Error{Tag: "no-parent", Phrase: "the document does not exist", Ancestor: s.ancestorURI(r, t, ancestorUserDir)}}
		case !exists:
			return outcome{status: http.StatusNotFound, msg: "no such document"}
		default:
			op := OpPut
			if r.Method == http.MethodDelete {
				op = OpDelete
			}
			next, created, err = applySelector(cur, t, op, body)
			var xe *Error
			switch {
			case errors.As(err, &xe):
				if xe.Tag == "no-parent" {
					xe.Ancestor = s.ancestorURI(r, t, xe.Ancestor)
				}
				return outcome{xerr: xe}
			case errors.Is(err, ErrNotFound):
				return outcome{status: http.StatusNotFound, msg: "no such node"}
			case errors.Is(err, ErrSelector):
				return outcome{status: http.StatusBadRequest, msg: err.Error()}
			case err != nil:
				return s.storeFailed(t, "edit", err)
			}
			if xe := s.validate(t.auid, next); xe != nil {
				return outcome{xerr: xe}
			}
		}
		var newETag string
		if t.sel == nil && r.Method == http.MethodDelete {
			err = st.DeleteDocument(ctx, t.auid.Name, t.user, t.doc, etag)
		} else {
			newETag, err = st.PutDocument(ctx, t.auid.Name, t.user, t.doc, next, etag)
		}
		switch {
		case err == nil:
			status := http.StatusOK
			if created && r.Method == http.MethodPut {
				status = http.StatusCreated
			}
			return outcome{status: status, etag: newETag}
		case errors.As(err, new(*Error)):
			// The store's own constraint (a name another user holds).
			var xe *Error
			errors.As(err, &xe)
			return outcome{xerr: xe}
		case errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound):
			// Another writer came first.
			if conditional {
				return outcome{status: http.StatusPreconditionFailed, msg: "the document changed"}
			}
			if attempt == maxAttempts {
				s.log.Warn("write contention", "auid", t.auid.Name, "user", t.user, "doc", t.doc)
				return outcome{status: http.StatusServiceUnavailable, msg: "the document keeps changing; try again"}
			}
		default:
			return s.storeFailed(t, "write", err)
		}
	}
}

// applySelector runs apply for a target's selector, already parsed.
func applySelector(doc []byte, t target, op Op, value []byte) ([]byte, bool, error) {
	q, err := resolve(t.sel, names{t.auid.Namespace, t.ns})
	if err != nil {
		return nil, false, err
	}
	d, err := parseDoc(doc)
	if err != nil {
		return nil, false, err
	}
	created, err := edit(d, q, op, value)
	if err != nil {
		return nil, false, err
	}
	return d.Bytes(), created, nil
}

func (s *Server) storeFailed(t target, what string, err error) outcome {
	s.log.Error(what+" document", "auid", t.auid.Name, "user", t.user, "doc", t.doc, "err", err)
	return outcome{status: http.StatusInternalServerError, msg: "store unavailable"}
}

// validate checks a document about to be stored: size, well-formedness,
// the root's namespace, then the AUID's own rules.
func (s *Server) validate(a *AUID, body []byte) *Error {
	if len(body) > s.cfg.MaxDocument {
		return xcapError("constraint-failure", "the document would be larger than the server allows")
	}
	d, err := xmltree.Parse(body, limits)
	if err != nil {
		return treeError(err, "not-well-formed")
	}
	if a.Namespace != "" && d.Root.Space != a.Namespace {
		return xcapError("schema-validation-error", "the root element must be in namespace "+a.Namespace)
	}
	if a.Validate == nil {
		return nil
	}
	if err := a.Validate(body); err != nil {
		var xe *Error
		if errors.As(err, &xe) {
			return xe
		}
		return xcapError("schema-validation-error", err.Error())
	}
	return nil
}

// ancestorUserDir stands for the user's directory as the ancestor of a
// no-parent: no node selector can be written this way.
const ancestorUserDir = "\x00user"

// ancestorURI turns the node selector of a no-parent ancestor into its
// HTTP URI (RFC 4825 §11): "" is the document, ancestorUserDir the
// user's directory (when the document itself is missing).
func (s *Server) ancestorURI(r *http.Request, t target, sel string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	switch sel {
	case ancestorUserDir:
		return base + t.userPath
	case "":
		return base + t.docPath
	}
	u := base + t.docPath + "/~~/" + escapeSelector(sel)
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return u
}

// escapeSelector percent-encodes a node selector for a URI path, slashes
// kept.
func escapeSelector(sel string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(sel); i++ {
		c := sel[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// conflict answers 409 with an xcap-error body.
func (s *Server) conflict(w http.ResponseWriter, e *Error) {
	respond(w, http.StatusConflict, ErrorContentType, "", e.Body())
}

func respond(w http.ResponseWriter, status int, contentType, etag string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	if etag != "" {
		h.Set("ETag", quoteETag(etag))
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func quoteETag(etag string) string { return `"` + etag + `"` }

// etagMatches reports whether a list of entity tags (an If-Match or
// If-None-Match value) holds "*" or etag, comparing weakly or strongly
// (RFC 9110 §8.8.3.2).
func etagMatches(values []string, etag string, weak bool) (star, match bool) {
	for _, v := range values {
		for len(v) > 0 {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				star = true
				v = v[1:]
				continue
			}
			isWeak := strings.HasPrefix(v, "W/")
			if isWeak {
				v = v[2:]
			}
			var tag string
			if strings.HasPrefix(v, `"`) {
				end := strings.IndexByte(v[1:], '"')
				if end < 0 {
					tag, v = v[1:], ""
				} else {
					tag, v = v[1:1+end], v[2+end:]
				}
			} else {
				// An unquoted tag, as some clients send.
				end := strings.IndexAny(v, ", \t")
				if end < 0 {
					end = len(v)
				}
				tag, v = v[:end], v[end:]
			}
			if tag == etag && (weak || !isWeak) {
				match = true
			}
		}
	}
	return star, match
}

// ifMatchHolds evaluates If-Match for a document that exists or not.
func ifMatchHolds(h http.Header, exists bool, etag string) bool {
	values := h.Values("If-Match")
	if len(values) == 0 {
		return true
	}
	star, match := etagMatches(values, etag, false)
	return exists && (star || match)
}

// ifNoneMatchFails evaluates If-None-Match: true when the condition is
// false (412, or 304 for a GET).
func ifNoneMatchFails(h http.Header, exists bool, etag string) bool {
	values := h.Values("If-None-Match")
	if len(values) == 0 {
		return false
	}
	star, match := etagMatches(values, etag, true)
	return exists && (star || match)
}

var _ http.Handler = (*Server)(nil)
