package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/xcap"
	"github.com/hlas-voip/hlas/xcap/presrules"
	"github.com/hlas-voip/hlas/xcap/resourcelists"
)

// XCAP is the configuration of the XCAP server (RFC 4825, docs/xcap.md):
// where softphones keep their buddy lists (resource-lists), list services
// (rls-services) and presence rules (pres-rules).
//
//	xcap:
//	  listen: 127.0.0.1:8090
//	  tls: false
//	  root: /xcap-root
type XCAP struct {
	// Listen is the HTTP listener's address; "" (the default) turns the
	// XCAP server off.
	Listen string `yaml:"listen"`
	// TLS serves HTTPS with the server's tls_cert and tls_key.
	TLS bool `yaml:"tls"`
	// Config is the XCAP server's own: root, max_document,
	// nonce_lifetime.
	xcap.Config `yaml:",inline"`
}

// xcapDocs are the store's XCAP documents as the XCAP server sees them.
type xcapDocs struct{ st store.XCAPDocuments }

func (d xcapDocs) Document(ctx context.Context, auid, user, name string) ([]byte, string, error) {
	doc, err := d.st.XCAPDocument(ctx, auid, user, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", xcap.ErrNotFound
	}
	return doc.Body, doc.ETag, err
}

func (d xcapDocs) PutDocument(ctx context.Context, auid, user, name string, body []byte, ifETag string) (string, error) {
	etag, err := d.st.PutXCAPDocument(ctx, store.XCAPDocument{AUID: auid, Owner: user, Name: name, Body: body}, ifETag)
	if errors.Is(err, store.ErrConflict) {
		return "", xcap.ErrConflict
	}
	return etag, err
}

func (d xcapDocs) DeleteDocument(ctx context.Context, auid, user, name, ifETag string) error {
	err := d.st.DeleteXCAPDocument(ctx, auid, user, name, ifETag)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return xcap.ErrNotFound
	case errors.Is(err, store.ErrConflict):
		return xcap.ErrConflict
	}
	return err
}

// presRulesDocs serves pres-rules over the presence rules table, the one
// place the server decides from: a PUT replaces the user's rules and keeps
// the client's document beside them (table hlas_xcap), so that a GET
// gives back what the client wrote, its rule ids and all, while the rules
// are still what it says. Once `hlas presence` changed them, a GET renders
// the table instead. The entity tag is the stored document's, or a hash of
// the rendering. The document is "index" (RFC 5025 §9.2).
type presRulesDocs struct {
	st store.Store
	// mu makes the check of the tag and the write one step for the
	// writes of this server.
	mu sync.Mutex
}

func sameRules(a []presrules.Rule, b []store.PresenceRule) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]string, len(b))
	for _, r := range b {
		m[r.Watcher] = r.Action
	}
	for _, r := range a {
		if m[r.Watcher] != r.Action {
			return false
		}
	}
	return true
}

// current returns the document a GET shows, its tag, and the stored
// client document's tag ("" when none).
func (p *presRulesDocs) current(ctx context.Context, user string) (body []byte, etag, storedTag string, err error) {
	rs, err := p.st.PresenceRules(ctx, user)
	if err != nil {
		return nil, "", "", err
	}
	d, err := p.st.XCAPDocument(ctx, "pres-rules", user, "index")
	switch {
	case err == nil:
		storedTag = d.ETag
		if parsed, perr := presrules.Parse(d.Body); perr == nil && sameRules(parsed, rs) {
			return d.Body, d.ETag, storedTag, nil
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, "", "", err
	}
	if len(rs) == 0 {
		return nil, "", storedTag, xcap.ErrNotFound
	}
	rules := make([]presrules.Rule, len(rs))
	for i, r := range rs {
		rules[i] = presrules.Rule{Watcher: r.Watcher, Action: r.Action}
	}
	body = presrules.Marshal(rules)
	sum := sha256.Sum256(body)
	return body, "r" + hex.EncodeToString(sum[:8]), storedTag, nil
}

func (p *presRulesDocs) Document(ctx context.Context, auid, user, name string) ([]byte, string, error) {
	if name != "index" {
		return nil, "", xcap.ErrNotFound
	}
	body, etag, _, err := p.current(ctx, user)
	return body, etag, err
}

func (p *presRulesDocs) PutDocument(ctx context.Context, auid, user, name string, body []byte, ifETag string) (string, error) {
	if name != "index" {
		return "", &xcap.Error{Tag: "constraint-failure", Phrase: `the pres-rules document is named "index"`}
	}
	rules, err := presrules.Parse(body)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, cur, stored, err := p.current(ctx, user)
	if err != nil && !errors.Is(err, xcap.ErrNotFound) {
		return "", err
	}
	if cur != ifETag {
		return "", xcap.ErrConflict
	}
	rs := make([]store.PresenceRule, len(rules))
	for i, r := range rules {
		rs[i] = store.PresenceRule{Presentity: user, Watcher: r.Watcher, Action: r.Action}
	}
	if err := p.st.ReplacePresenceRules(ctx, user, rs); err != nil {
		return "", err
	}
	return p.st.PutXCAPDocument(ctx, store.XCAPDocument{AUID: "pres-rules", Owner: user, Name: "index", Body: body}, stored)
}

func (p *presRulesDocs) DeleteDocument(ctx context.Context, auid, user, name, ifETag string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, cur, stored, err := p.current(ctx, user)
	if err != nil {
		return err
	}
	if cur != ifETag {
		return xcap.ErrConflict
	}
	if err := p.st.ReplacePresenceRules(ctx, user, nil); err != nil {
		return err
	}
	if stored != "" {
		if err := p.st.DeleteXCAPDocument(ctx, "pres-rules", user, "index", stored); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// validatePresRules refuses rules the server cannot honour, naming them.
func validatePresRules(body []byte) error {
	_, err := presrules.Parse(body)
	var u *presrules.Unsupported
	if errors.As(err, &u) {
		return &xcap.Error{Tag: "constraint-failure", Phrase: u.Error()}
	}
	return err
}

// validateLists maps RFC 4826's constraints to XCAP's answer.
func validateLists(body []byte) error {
	if err := resourcelists.Validate(body); err != nil {
		return &xcap.Error{Tag: "constraint-failure", Phrase: err.Error()}
	}
	return nil
}

// validateServices checks an rls-services document: RFC 4826's
// constraints, and service URIs in our domains (the server serves them).
// That another user's service has a URI is checked by uniqueService.
func (s *Server) validateServices(body []byte) error {
	if err := resourcelists.ValidateServices(body); err != nil {
		return &xcap.Error{Tag: "constraint-failure", Phrase: err.Error()}
	}
	doc, err := resourcelists.ParseServices(body)
	if err != nil {
		return err
	}
	for _, sv := range doc.Services {
		if _, ok := s.listAOR(sv.URI); !ok {
			return &xcap.Error{Tag: "constraint-failure", Phrase: "service " + sv.URI + " is not in a domain of this server"}
		}
	}
	return nil
}

// servicesDocs is the rls-services store. A service URI is unique across
// all users (RFC 4826 §4.3.3; another's: uniqueness-failure), is no
// user's address (a list must not hide a user's own presence), and names
// only its owner's lists. mu makes the check and the write one step for
// this server's writers.
type servicesDocs struct {
	xcapDocs
	s  *Server
	mu *sync.Mutex
}

func (d servicesDocs) PutDocument(ctx context.Context, auid, user, name string, body []byte, ifETag string) (string, error) {
	doc, err := resourcelists.ParseServices(body)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	others, err := d.st.XCAPDocuments(ctx, "rls-services", "")
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, o := range others {
		if o.Owner == user && o.Name == name {
			continue
		}
		if od, err := resourcelists.ParseServices(o.Body); err == nil {
			for _, sv := range od.Services {
				if aor, ok := d.s.listAOR(sv.URI); ok {
					taken[aor] = true
				}
			}
		}
	}
	for _, sv := range doc.Services {
		aor, ok := d.s.listAOR(sv.URI)
		if !ok {
			continue // validateServices refused it
		}
		if taken[aor] {
			return "", &xcap.Error{Tag: "uniqueness-failure", Phrase: "the service URI is taken",
				Exists: []xcap.Exists{{Field: `rls-services/service/@uri`}}}
		}
		if d.s.events != nil && d.s.events.isUser(ctx, aor) {
			return "", &xcap.Error{Tag: "constraint-failure", Phrase: "service " + sv.URI + " is a user's address"}
		}
		if sv.ResourceList != "" && !ownList(sv.ResourceList, user) {
			return "", &xcap.Error{Tag: "constraint-failure", Phrase: "a service may name only its owner's lists"}
		}
	}
	return d.xcapDocs.PutDocument(ctx, auid, user, name, body, ifETag)
}

// ownList reports whether an XCAP URI names a resource-lists document of
// owner's.
func ownList(ref, owner string) bool {
	x, ok := xcap.ParseRef(ref)
	return ok && x.AUID == "resource-lists" && x.User == owner
}

// openXCAP builds the XCAP server when it is configured.
func (s *Server) openXCAP(log *slog.Logger) (*xcap.Server, error) {
	if s.cfg.XCAP.Listen == "" {
		return nil, nil
	}
	docs := xcapDocs{s.store}
	return xcap.New(s.cfg.XCAP.Config, xcap.Env{
		Store:  docs,
		HA1:    s.xcapHA1,
		Logger: log,
		OnChange: func(auid, user, name string) {
			if s.events == nil {
				return
			}
			switch auid {
			case "pres-rules":
				s.events.pollRules()
			case "resource-lists", "rls-services":
				s.events.rls.poll()
			}
		},
	},
		xcap.AUID{Name: "resource-lists", ContentType: resourcelists.ContentType, Namespace: resourcelists.Namespace, Validate: validateLists},
		xcap.AUID{Name: "rls-services", ContentType: resourcelists.ServicesContentType, Namespace: resourcelists.ServicesNamespace,
			Validate: s.validateServices, Store: servicesDocs{docs, s, new(sync.Mutex)}},
		xcap.AUID{Name: "pres-rules", ContentType: presrules.ContentType, Namespace: "urn:ietf:params:xml:ns:common-policy",
			Validate: validatePresRules, Store: &presRulesDocs{st: s.store}},
	)
}

// xcapHA1 is the digest hash of a subscriber of our domains.
func (s *Server) xcapHA1(ctx context.Context, username, domain string, alg digest.Algorithm) (string, error) {
	u := sip.URI{Scheme: "sip", User: username, Host: domain}
	d, ok := s.aorDomain(&u)
	if !ok {
		return "", errors.New("not a domain of this server")
	}
	user, err := s.store.User(ctx, strings.ToLower(username), d)
	if err != nil {
		return "", err
	}
	switch alg {
	case digest.MD5:
		if user.HA1MD5 != "" {
			return user.HA1MD5, nil
		}
	case digest.SHA256:
		if user.HA1SHA256 != "" {
			return user.HA1SHA256, nil
		}
	}
	return "", errors.New("no hash for the algorithm")
}

// startXCAP binds the XCAP listener.
func (s *Server) startXCAP() error {
	if s.xcap == nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.XCAP.Listen)
	if err != nil {
		return fmt.Errorf("xcap listen %s: %w", s.cfg.XCAP.Listen, err)
	}
	if s.cfg.XCAP.TLS {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("xcap tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.xcapLn = ln
	s.xcapHTTP = &http.Server{Handler: s.xcap, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	go func() { _ = s.xcapHTTP.Serve(ln) }()
	s.log.Info("xcap", "addr", ln.Addr().String(), "tls", s.cfg.XCAP.TLS)
	return nil
}

// XCAPAddr returns the bound XCAP address, or "".
func (s *Server) XCAPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.xcapLn == nil {
		return ""
	}
	return s.xcapLn.Addr().String()
}
