package proxy

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// ErrNotFound is returned by a Locator for an address of record it does
// not know at all; the proxy answers 404. A known one without contacts is
// (nil, nil) and gets 480 (RFC 3261 §16.5 and §21.4.18).
var ErrNotFound = errors.New("proxy: no such user")

// Flow is the way a message came in, or the way back to a peer behind a
// NAT (RFC 5626 §3): transport, the local socket, the remote address and,
// for streams, the connection.
type Flow struct {
	// Proto is UDP, TCP or TLS.
	Proto string
	// Local is the local address: the UDP socket's bound address (maybe a
	// wildcard), or the connection's local address.
	Local netip.AddrPort
	// Remote is the peer's address as seen here (after any NAT).
	Remote netip.AddrPort
	// Conn is the stream connection, nil for UDP.
	Conn *transport.Conn
}

// IsZero reports a flow that is not known.
func (f Flow) IsZero() bool { return !f.Remote.IsValid() }

// Target is one contact of a user: where the location service says a
// request for an address of record goes (RFC 3261 §10.3, §16.5).
type Target struct {
	// URI is the contact, the new Request-URI (§16.6 step 2).
	URI sip.URI
	// Q is the contact's preference, 0 to 1 (RFC 3261 §20.10); 1 when the
	// registration gave none. Contacts of equal q are tried in parallel,
	// lower ones only after all higher ones failed (§16.6).
	Q float64
	// Path is the Path of the registration (RFC 3327 §5): it becomes the
	// Route set of requests to this contact.
	Path []sip.Address
	// Flow is the flow the REGISTER came on; requests to the contact go
	// back over it (the connection while open, else its remote address
	// from the same UDP socket). Zero means: resolve the URI.
	Flow Flow
	// Expires is when the binding ends; zero when unknown. A redirect
	// writes what is left of it as the Contact's expires (RFC 3261 §20.10).
	Expires time.Time
}

// Locator is the location service (RFC 3261 §10): the contacts registered
// for an address of record. The registrar implements it; StaticLocator
// serves configured bindings.
type Locator interface {
	Lookup(ctx context.Context, aor sip.URI) ([]Target, error)
}

// LocatorFunc adapts a function to a Locator.
type LocatorFunc func(ctx context.Context, aor sip.URI) ([]Target, error)

// Lookup calls f.
func (f LocatorFunc) Lookup(ctx context.Context, aor sip.URI) ([]Target, error) { return f(ctx, aor) }

// AOR returns the canonical address-of-record key of a URI: "sip:" (also
// for sips, RFC 3261 §10.3 step 5), the unescaped user part, "@" and the
// lower-case host; port, parameters and headers dropped.
func AOR(u sip.URI) string {
	var buf [128]byte
	return string(appendAOR(buf[:0], &u))
}

// appendAOR appends AOR(*u): a map of AORs is looked up without making
// the string.
func appendAOR(b []byte, u *sip.URI) []byte {
	b = append(b, "sip:"...)
	if u.User != "" {
		b = append(b, sip.Unescape(u.User)...)
		b = append(b, '@')
	}
	return append(b, strings.ToLower(u.Host)...)
}

// StaticLocator is a fixed table of bindings, keyed by AOR.
type StaticLocator map[string][]Target

// Lookup returns the bindings of aor, or ErrNotFound.
func (s StaticLocator) Lookup(_ context.Context, aor sip.URI) ([]Target, error) {
	var buf [128]byte
	ts, ok := s[string(appendAOR(buf[:0], &aor))]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]Target(nil), ts...), nil
}

// chainLocator asks each Locator in turn until one knows the AOR.
type chainLocator []Locator

func (c chainLocator) Lookup(ctx context.Context, aor sip.URI) ([]Target, error) {
	err := ErrNotFound
	for _, l := range c {
		ts, e := l.Lookup(ctx, aor)
		if e == nil {
			return ts, nil
		}
		if !errors.Is(e, ErrNotFound) {
			err = e
		}
	}
	return nil, err
}

// byQ groups targets by q-value, highest first (RFC 3261 §16.6: equal q in
// parallel, lower q after higher ones failed); order within a group is kept.
// The groups are windows of ts when it is in that order already (one
// contact, or contacts listed highest q first, as Locators return them),
// else of a sorted copy; ts is never changed.
func byQ(ts []Target) [][]Target {
	higherQ := func(a, b Target) int {
		switch {
		case a.Q > b.Q:
			return -1
		case a.Q < b.Q:
			return 1
		}
		return 0
	}
	if len(ts) == 0 {
		return nil
	}
	sorted := ts
	if !slices.IsSortedFunc(ts, higherQ) {
		sorted = slices.Clone(ts)
		slices.SortStableFunc(sorted, higherQ)
	}
	n := 0
	for i := range sorted {
		if i == 0 || sorted[i].Q != sorted[i-1].Q {
			n++
		}
	}
	groups := make([][]Target, 0, n)
	start := 0
	for i := 1; i <= len(sorted); i++ {
		if i == len(sorted) || sorted[i].Q != sorted[i-1].Q {
			groups = append(groups, sorted[start:i:i])
			start = i
		}
	}
	return groups
}
