// Package api is hlas's REST API (docs/api.md): JSON over HTTP, versioned
// under /api/v1 and described by the OpenAPI 3 document it serves at
// /api/v1/openapi.json. It manages subscribers, registrations, bans and
// message-waiting counts, and reads call detail records, presence and
// statistics. Every endpoint but /healthz and /readyz wants a bearer
// token from `hlas api token add`; read-only tokens may only read.
//
// The package takes what it works on through Env, so it runs without a
// server in tests; package server wires it to its store, registrar and
// guard. Requests are bounded in size, number in flight and time, so the
// API cannot starve SIP processing.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/store"
)

// Store is what the API reads and changes in the server's store.
type Store interface {
	AddUser(ctx context.Context, u store.User) error
	SetUserHashes(ctx context.Context, username, domain, ha1MD5, ha1SHA256 string) error
	DeleteUser(ctx context.Context, username, domain string) error
	User(ctx context.Context, username, domain string) (store.User, error)
	ListUsers(ctx context.Context, domain string) ([]store.User, error)
	Bindings(ctx context.Context, aor string, now time.Time) ([]store.Binding, error)
	CDRs(ctx context.Context, f store.CDRFilter) ([]store.CDR, error)
	PutBans(ctx context.Context, bans []store.Ban) error
	DeleteBan(ctx context.Context, p netip.Prefix) error
	Bans(ctx context.Context, now time.Time) ([]store.Ban, error)
	PutMailbox(ctx context.Context, m store.Mailbox) error
	Mailbox(ctx context.Context, aor string) (store.Mailbox, error)
	store.APITokens
}

// Registrar is the live location service (registrar.Registrar).
type Registrar interface {
	// Lookup returns the current bindings of an AOR.
	Lookup(aor string) []registrar.Binding
	// Remove unregisters one binding last refreshed at updated.
	Remove(aor, id string, updated time.Time, why string) (bool, error)
}

// Presentity is the presence state of one AOR as its watchers get it.
type Presentity struct {
	AOR string `json:"aor"`
	// Document is the composed PIDF document (RFC 3863) a watcher is
	// notified of; "closed" when nothing is published.
	Document     string        `json:"document"`
	Publications []Publication `json:"publications"`
}

// Publication is one device's published state (RFC 3903).
type Publication struct {
	ID          string    `json:"id"`
	ETag        string    `json:"etag"`
	ContentType string    `json:"content_type"`
	Body        string    `json:"body"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	Expires     time.Time `json:"expires"`
}

// Env is what the API works on. Store and Registrar are required.
type Env struct {
	Store     Store
	Registrar Registrar
	// Presence returns an AOR's presence state; nil when the server's
	// event packages are off (the endpoint answers 501).
	Presence func(aor string) Presentity
	// Events is the server's event bus (GET /api/v1/events); nil: the
	// stream answers 501.
	Events *Bus
	// Calls is the server's call control (/calls); nil: those endpoints
	// answer 501.
	Calls Calls
	// Stats returns the server's statistics as JSON-ready data.
	Stats func() any
	// Reload re-reads the server's configuration and applies what can
	// change live (POST /api/v1/reload, as SIGHUP); it returns the
	// report, JSON-ready, or why the configuration was refused (nothing
	// changed then), or ErrNoReload when there is nothing to reload
	// from. nil: the endpoint answers 501 as for ErrNoReload.
	Reload func() (any, error)
	// Ready reports whether the server serves (/readyz); nil: always.
	Ready func() error
	// AuthFailed reports a request with a wrong or missing token from
	// src to the brute-force guard; Banned says whether src is banned
	// (answered 403 before its token is looked at). Both optional.
	AuthFailed func(src netip.Addr)
	Banned     func(src netip.Addr) bool
	// Registerer takes the API's metrics (namespace hlas, subsystem
	// api); nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// ErrNoReload is what Env.Reload returns when the server has no
// configuration source to read again: the endpoint answers 501.
var ErrNoReload = errors.New("api: no configuration source to reload from")

// Config bounds the API's work.
type Config struct {
	// MaxBody is the largest request body in bytes; larger get 413.
	// Default 64 KiB.
	MaxBody int64 `yaml:"max_body"`
	// MaxInFlight is how many requests run at once; more get 503 with
	// Retry-After. Default 16.
	MaxInFlight int `yaml:"max_in_flight"`
	// Timeout bounds each request's store work. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Defaults of Config.
const (
	DefaultMaxBody     = 64 << 10
	DefaultMaxInFlight = 16
	DefaultTimeout     = 10 * time.Second
)

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate refuses negative bounds, naming the field.
func (c Config) Validate() error {
	switch {
	case c.MaxBody < 0:
		return errors.New("api.max_body must not be negative")
	case c.MaxInFlight < 0:
		return errors.New("api.max_in_flight must not be negative")
	case c.Timeout < 0:
		return errors.New("api.timeout must not be negative")
	}
	return nil
}

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document describing the API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// NewToken makes a token: 32 random bytes, base64url without padding.
// It returns the token to give the client and the hash to store.
func NewToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken is the stored form of a token: hex SHA-256. A token has 256
// random bits, so a plain hash (no salt, no slow KDF) is enough: nobody
// can guess one from its hash.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// tokenLen is the length of a token NewToken makes.
const tokenLen = 43
