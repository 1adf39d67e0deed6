// Package store keeps hlas's persistent state behind small interfaces:
// the subscribers that digest authentication checks (RFC 3261 §22, RFC 7616)
// and the registrations of the location service (RFC 3261 §10.3), so that a
// restart loses neither.
//
// Two back ends implement the same interfaces over database/sql and pass the
// same test suite: embedded SQLite (modernc.org/sqlite, no cgo; the default,
// one file in the data directory, WAL mode so that `hlas user` and `hlas reg`
// can work while the server runs) and PostgreSQL (github.com/jackc/pgx/v5).
// Open picks one from a Config.
//
// Passwords are never stored: a subscriber has only the digest hashes
// H(username:realm:password) for MD5 and SHA-256 (RFC 7616 §3.4.2), with the
// realm being the subscriber's domain. Times are stored as Unix seconds.
package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Errors returned by every back end.
var (
	// ErrNotFound is a subscriber that does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists is a subscriber that already exists.
	ErrExists = errors.New("store: already exists")
)

// User is a subscriber: an address-of-record user@domain allowed to
// authenticate (RFC 3261 §22) and register (§10). Its realm is its domain.
type User struct {
	// Username is the user part of the AOR, unescaped: the digest username.
	Username string
	// Domain is the host part of the AOR, lower case: the digest realm.
	Domain string
	// HA1MD5 is hex MD5(username:domain:password) (RFC 7616 §3.4.2).
	HA1MD5 string
	// HA1SHA256 is hex SHA-256(username:domain:password) (RFC 7616 §3.4.2,
	// RFC 8760 §2.3).
	HA1SHA256 string
	// Created and Updated are set by the store.
	Created, Updated time.Time
}

// AOR returns "username@domain".
func (u User) AOR() string { return u.Username + "@" + u.Domain }

// SplitAOR splits "user@domain" (optionally with a sip: or sips: prefix) at
// its last "@" and lower-cases the domain. It fails when either part is
// empty or the text holds characters that cannot be in an AOR.
func SplitAOR(aor string) (username, domain string, err error) {
	s := aor
	if i := strings.IndexByte(s, ':'); i >= 0 && (strings.EqualFold(s[:i], "sip") || strings.EqualFold(s[:i], "sips")) {
		s = s[i+1:]
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", fmt.Errorf("store: %q is not user@domain", aor)
	}
	username, domain = s[:at], strings.ToLower(s[at+1:])
	if strings.ContainsAny(username, " \t\r\n\x00<>\";") || strings.ContainsAny(domain, " \t\r\n\x00<>\";@/:?") {
		return "", "", fmt.Errorf("store: %q is not user@domain", aor)
	}
	return username, domain, nil
}

// Users is the subscriber database.
type Users interface {
	// AddUser creates a subscriber; ErrExists if it is already there.
	AddUser(ctx context.Context, u User) error
	// PutUsers creates or replaces many subscribers in one transaction
	// with one prepared statement (bulk import).
	PutUsers(ctx context.Context, us []User) error
	// SetUserHashes replaces the digest hashes of a subscriber (a new
	// password); ErrNotFound if there is none.
	SetUserHashes(ctx context.Context, username, domain, ha1MD5, ha1SHA256 string) error
	// DeleteUser removes a subscriber; ErrNotFound if there is none.
	DeleteUser(ctx context.Context, username, domain string) error
	// User returns one subscriber, or ErrNotFound.
	User(ctx context.Context, username, domain string) (User, error)
	// ListUsers returns every subscriber, ordered by domain then username;
	// with a non-empty domain only that domain's.
	ListUsers(ctx context.Context, domain string) ([]User, error)
	// UsersVersion returns a number that changes whenever a subscriber is
	// added, changed or removed, by this process or any other sharing the
	// database, and never returns to an earlier value; writes that touch
	// no subscriber (bindings, CDRs, a failed AddUser) leave it alone. It
	// changes in the transaction that changes the subscriber, so a reader
	// that sees the new version sees the change. A cache of subscribers
	// polls it to know when to forget what it holds.
	UsersVersion(ctx context.Context) (int64, error)
}

// Binding is one stored registration: a contact bound to an
// address-of-record (RFC 3261 §10.3), with what the location service needs
// to reach it again after a restart. The registrar keeps the live copy in
// memory and writes every change through to the store.
type Binding struct {
	// AOR is the address-of-record, "user@domain".
	AOR string
	// ID identifies the binding within its AOR for its whole life.
	ID string
	// Contact is the Contact header value as registered, without the
	// expires parameter.
	Contact string
	// Q is the q-value in thousandths (RFC 3261 §20.10); 1000 when absent.
	Q int
	// Expires is when the binding lapses.
	Expires time.Time
	// CallID and CSeq are those of the REGISTER that last refreshed it
	// (RFC 3261 §10.3 step 7).
	CallID string
	CSeq   uint32
	// Path is the Path header of that REGISTER (RFC 3327), values joined
	// with ", "; empty when none.
	Path string
	// Instance is the +sip.instance Contact parameter as written, and
	// RegID the reg-id parameter, 0 when absent (RFC 5626 §4.1).
	Instance string
	RegID    int
	// Source and Local are the remote and local addresses the REGISTER
	// travelled between, as ip:port; Transport is UDP, TCP or TLS.
	Source    string
	Local     string
	Transport string
	// UserAgent is the User-Agent header of the REGISTER.
	UserAgent string
	// Updated is when the binding was last written.
	Updated time.Time
	// NAT records that the REGISTER showed the contact to be behind a
	// NAT (its top Via or its Contact address did not match the source):
	// evidence only that REGISTER had, kept for after a restart.
	NAT bool
}

// BindingKey names one binding.
type BindingKey struct {
	AOR string
	ID  string
}

// Bindings is the persistent half of the location service.
type Bindings interface {
	// WriteBindings creates or replaces put and removes del, all in one
	// transaction (RFC 3261 §10.3: binding updates commit all or none).
	WriteBindings(ctx context.Context, put []Binding, del []BindingKey) error
	// Bindings returns the bindings that have not lapsed at now, ordered
	// by AOR; with a non-empty aor only that AOR's.
	Bindings(ctx context.Context, aor string, now time.Time) ([]Binding, error)
	// PurgeBindings removes the bindings that lapsed at or before now and
	// reports how many.
	PurgeBindings(ctx context.Context, now time.Time) (int64, error)
}

// QuickWriter is implemented by a back end whose WriteBindings only
// appends to a local file (the embedded database's journal, in the
// process that owns it): a caller may then commit on its own goroutine
// rather than hand the write to another.
type QuickWriter interface {
	QuickWrites() bool
}

// Store is a complete back end.
type Store interface {
	Users
	Bindings
	CDRs
	Bans
	Mailboxes
	Publications
	Subscriptions
	PresenceRules
	XCAPDocuments
	APITokens
	// Close releases the database.
	Close() error
}

// Config says which back end to open.
type Config struct {
	// URL is "" or "sqlite" for the embedded database in Dir, "sqlite:PATH"
	// for a SQLite file elsewhere, or a postgres:// (postgresql://) URL.
	URL string
	// Dir is the data directory holding the embedded database (hlas.db).
	Dir string
}

// SQLiteFile is the embedded database's file name inside the data directory.
const SQLiteFile = "hlas.db"

// Open opens (and creates or migrates when needed) the configured back end.
func Open(ctx context.Context, cfg Config) (Store, error) {
	u := cfg.URL
	switch {
	case u == "" || u == "sqlite":
		if cfg.Dir == "" {
			return nil, errors.New("store: no data directory for the embedded database")
		}
		return OpenSQLite(ctx, filepath.Join(cfg.Dir, SQLiteFile))
	case strings.HasPrefix(u, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(u, "sqlite:"))
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return OpenPostgres(ctx, u)
	}
	return nil, fmt.Errorf("store: %q: want sqlite, sqlite:PATH or a postgres:// URL", redact(u))
}

// redact hides the password of a URL for error messages.
func redact(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	cred, host, ok := strings.Cut(rest, "@")
	if !ok {
		return u
	}
	if user, _, hasPass := strings.Cut(cred, ":"); hasPass {
		return scheme + "://" + user + ":xxx@" + host
	}
	return u
}
