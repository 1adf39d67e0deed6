package xcap

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/sip/digest"
)

// Store keeps the documents with their entity tags. PutDocument and
// DeleteDocument are compare-and-set, so that the server can read a
// document, edit it and write it back without a lock shared by all nodes.
type Store interface {
	// Document returns a document and its entity tag; ErrNotFound.
	Document(ctx context.Context, auid, user, name string) (body []byte, etag string, err error)
	// PutDocument stores body when the current entity tag is ifETag (""
	// : the document must not exist yet) and returns the new one;
	// ErrConflict otherwise. A *Error (a constraint only the store can
	// check, such as a name unique across users) is answered 409.
	PutDocument(ctx context.Context, auid, user, name string, body []byte, ifETag string) (etag string, err error)
	// DeleteDocument removes the document when its entity tag is ifETag;
	// ErrNotFound, ErrConflict.
	DeleteDocument(ctx context.Context, auid, user, name, ifETag string) error
}

// AUID is an application usage (RFC 4825 §5): the kind of document a
// subtree of the server holds.
type AUID struct {
	// Name is the AUID in URIs ("resource-lists").
	Name string
	// ContentType is the media type of whole documents
	// ("application/resource-lists+xml").
	ContentType string
	// Namespace is the default document namespace (RFC 4825 §5.2):
	// unprefixed names of node selectors are in it, and documents' root
	// elements must be.
	Namespace string
	// Validate checks a whole document before it is stored, after any
	// element or attribute edit too (RFC 4825 §5.3). A returned
	// *Error is answered 409 with its body; any other error as 409
	// schema-validation-error with the error's text as phrase. nil:
	// well-formed UTF-8 XML with one root in Namespace is enough.
	Validate func(body []byte) error
	// Store overrides Env.Store for this AUID (pres-rules is kept in
	// another table). nil: Env.Store.
	Store Store
}

// Config is the XCAP server's configuration.
type Config struct {
	// Root is the path of the XCAP root (RFC 4825 §6.1). Default
	// "/xcap-root".
	Root string `yaml:"root"`
	// MaxDocument bounds a request body and a stored document, in bytes;
	// a larger body is answered 413. Default 1 MiB.
	MaxDocument int `yaml:"max_document"`
	// NonceLifetime is how long a digest nonce stays good; an answer with
	// an older one gets a new challenge with stale=true (RFC 7616 §3.3).
	// Default 5m.
	NonceLifetime time.Duration `yaml:"nonce_lifetime"`
}

// Defaults of Config.
const (
	DefaultRoot          = "/xcap-root"
	DefaultMaxDocument   = 1 << 20
	DefaultNonceLifetime = 5 * time.Minute
)

// Env is what the server needs from the rest of hlas.
type Env struct {
	// Store keeps the documents. Required.
	Store Store
	// HA1 returns the stored digest hash H(username:realm:password) of
	// username@domain for alg (digest.MD5 or digest.SHA256). Any error
	// means no such user: the request is challenged again, as for a wrong
	// password, so that users cannot be enumerated. Required.
	HA1 func(ctx context.Context, username, domain string, alg digest.Algorithm) (string, error)
	// NonceKey signs the stateless nonces; nodes sharing it accept each
	// other's. nil: random per instance.
	NonceKey []byte
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// Logger receives the server's log. nil: discard.
	Logger *slog.Logger
	// OnChange is called after a committed PUT or DELETE, for the server
	// to reload lists and rules. nil: nothing.
	OnChange func(auid, user, name string)
}

// capsAUID is the AUID of the server's capabilities (RFC 4825 §12).
const (
	capsAUID        = "xcap-caps"
	capsNamespace   = "urn:ietf:params:xml:ns:xcap-caps"
	capsContentType = "application/xcap-caps+xml"
	capsDocument    = "index"
)

// lockStripes is the number of in-process write locks; documents share
// them by hash.
const lockStripes = 64

// Server is an XCAP server; it is an http.Handler.
type Server struct {
	cfg    Config
	env    Env
	auids  map[string]*AUID
	caps   []byte
	capsET string
	key    []byte
	log    *slog.Logger
	// locks serialise the writes of one document within this process, so
	// that concurrent edits do not spin on the store's compare-and-set;
	// between processes, the compare-and-set alone keeps them safe.
	locks [lockStripes]sync.Mutex
}

// New returns a server for the AUIDs given, plus xcap-caps.
func New(cfg Config, env Env, auids ...AUID) (*Server, error) {
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	cfg.Root = "/" + strings.Trim(cfg.Root, "/")
	if cfg.Root == "/" {
		cfg.Root = ""
	}
	if strings.ContainsAny(cfg.Root, "?#%~") {
		return nil, fmt.Errorf("xcap: root %q: no ?, #, %% or ~ allowed", cfg.Root)
	}
	switch {
	case cfg.MaxDocument < 0:
		return nil, errors.New("xcap: max_document must not be negative")
	case cfg.MaxDocument == 0:
		cfg.MaxDocument = DefaultMaxDocument
	}
	switch {
	case cfg.NonceLifetime < 0:
		return nil, errors.New("xcap: nonce_lifetime must not be negative")
	case cfg.NonceLifetime == 0:
		cfg.NonceLifetime = DefaultNonceLifetime
	}
	if env.Store == nil {
		return nil, errors.New("xcap: Env.Store is required")
	}
	if env.HA1 == nil {
		return nil, errors.New("xcap: Env.HA1 is required")
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, env: env, auids: make(map[string]*AUID, len(auids)), log: env.Logger.With("feature", "xcap")}
	for i := range auids {
		a := auids[i]
		switch {
		case a.Name == "" || strings.ContainsAny(a.Name, "/?#%") || a.Name == "." || a.Name == "..":
			return nil, fmt.Errorf("xcap: bad AUID name %q", a.Name)
		case a.Name == capsAUID:
			return nil, fmt.Errorf("xcap: AUID %s is the server's own", capsAUID)
		case s.auids[a.Name] != nil:
			return nil, fmt.Errorf("xcap: AUID %s given twice", a.Name)
		case a.ContentType == "":
			return nil, fmt.Errorf("xcap: AUID %s has no content type", a.Name)
		}
		if a.Store == nil {
			a.Store = env.Store
		}
		s.auids[a.Name] = &a
	}
	s.key = env.NonceKey
	if len(s.key) == 0 {
		s.key = make([]byte, 32)
		if _, err := rand.Read(s.key); err != nil {
			return nil, fmt.Errorf("xcap: nonce key: %w", err)
		}
	}
	s.caps = capsDocumentFor(auids)
	sum := sha256.Sum256(s.caps)
	s.capsET = "caps-" + hex.EncodeToString(sum[:8])
	return s, nil
}

// lock returns the write lock of a document.
func (s *Server) lock(auid, user, name string) *sync.Mutex {
	// FNV-1a over the key, without allocating.
	h := uint32(2166136261)
	for _, part := range [...]string{auid, user, name} {
		for i := 0; i < len(part); i++ {
			h ^= uint32(part[i])
			h *= 16777619
		}
		h ^= 0xff // no byte of a name: "a"+"bc" differs from "ab"+"c"
		h *= 16777619
	}
	return &s.locks[h%lockStripes]
}
