package event

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// Flow is where a subscription's NOTIFYs go when the watcher is reached
// over the connection or socket its SUBSCRIBE came on (RFC 5626, NAT).
type Flow struct {
	// Proto is "UDP", "TCP", "TLS", "WS" or "WSS".
	Proto string
	// Local is the server's socket the SUBSCRIBE arrived on.
	Local netip.AddrPort
	// Remote is the address the SUBSCRIBE came from.
	Remote netip.AddrPort
	// Conn is the stream connection, nil for UDP (and after a restart).
	Conn *transport.Conn
}

// Sender sends a request of the server's own inside a dialog: the server
// adds the Via, and sends over flow when it is usable (else by the
// request's Route set and Request-URI). done is called once with the final
// response or an error (timeout, transport); it never blocks and keeps
// nothing of the response once it returns, so the Sender may call it on
// the goroutine that reads the network and reuse the response's memory
// afterwards. SendRequest must not block on
// the network; when it returns an error, done is not called (the Notifier
// treats the error as the NOTIFY's failure). The request is the Sender's
// from then on, except its Contact and Route slices, which it must not
// modify.
type Sender interface {
	SendRequest(req *sip.Request, flow Flow, done func(res *sip.Response, err error)) error
}

// BatchSender is a Sender that can send the NOTIFYs of one change
// together: a presentity with ten watchers costs one system call, not ten.
type BatchSender interface {
	Sender
	// Batch returns a Sender whose requests leave by its Flush at the
	// latest. It is used by one goroutine and flushed once.
	Batch() SenderBatch
}

// SenderBatch is the batch of a BatchSender.
type SenderBatch interface {
	Sender
	// Flush sends what the batch holds and lets it go. A datagram that
	// fails to leave is not reported: the NOTIFY's transaction
	// retransmits it, and fails it in the end.
	Flush()
}

// Decision is a package's answer to whether a watcher may see a resource
// (RFC 6665 §4.2.1.3, RFC 3857 for presence).
type Decision int

// Authorization decisions.
const (
	// Active: the watcher may see the resource's state.
	Active Decision = iota + 1
	// Pending: not decided yet; the subscription exists but its NOTIFYs
	// carry no state until Reauthorize makes it active.
	Pending
	// Rejected: a new subscription gets 403; an existing one ends with
	// terminated;reason=rejected.
	Rejected
)

// Package is an event package (RFC 6665 §7).
type Package interface {
	// Name is the Event header's token: "presence", "presence.winfo",
	// "message-summary", "dialog", "reg".
	Name() string
	// Accept lists the body types the package can send, preferred first;
	// the first is the default for a SUBSCRIBE without Accept.
	Accept() []string
	// DefaultExpires is the duration of a subscription whose SUBSCRIBE
	// has no Expires (each package defines it, RFC 6665 §7.2).
	DefaultExpires() time.Duration
	// Authorize decides whether watcher (the authenticated AOR
	// "user@domain", "" when unauthenticated) may see resource (the AOR
	// subscribed to). It may be called with the Notifier's lock released
	// only, and may call back into the Notifier.
	Authorize(watcher, resource string) Decision
	// Document renders the state to send to s. full is false when the
	// NOTIFY follows a change and the package may send partial state
	// (RFC 4662, RFC 3858); it is true for the first NOTIFY of a
	// subscription, after a refresh and after a failed NOTIFY. A nil body
	// sends a NOTIFY without one ("no state").
	Document(s *Subscription, full bool) (contentType string, body []byte)
}

// Lister is implemented by a package that also serves resource lists
// (RFC 4662): a subscription to a list resource that asked for one
// (Supported: eventlist) gets Require: eventlist on its 2xx and on every
// NOTIFY, whose body the package renders as a list.
type Lister interface {
	IsList(resource string) bool
}

// Env is what the Notifier needs from the server.
type Env struct {
	// Sender sends the NOTIFYs. Required.
	Sender Sender
	// Clock times expiries, rate limits and NOTIFY deadlines. Default:
	// the wall clock.
	Clock transaction.Clock
	// Logger receives the logs, with feature=event. Nil discards them.
	Logger *slog.Logger
	// Registerer receives the hlas_event_* metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Store keeps subscriptions across a restart. Nil: memory only.
	Store Store
	// Contact returns the server's own Contact for a dialog whose
	// SUBSCRIBE came over proto to local (in the 2xx and every NOTIFY).
	// Required.
	Contact func(proto string, local netip.AddrPort) sip.Address
	// NewResponse builds a response with the server's To tag and Server
	// header. Nil: sip.NewResponse with a random To tag.
	NewResponse func(req *sip.Request, code int, reason string) *sip.Response
	// ServerName goes in the User-Agent of NOTIFYs ("" : none).
	ServerName string
	// OnWatcher, when set, is told of every change of a subscription's
	// state: created, activated, made pending, ended (with the winfo
	// event: subscribe, approved, timeout, rejected, noresource, giveup,
	// deactivated). It runs outside the Notifier's lock, before the
	// Notifier calls Changed for the package's ".winfo" template when it
	// serves one, so a watcher-info package can note terminated watchers
	// for its next document (RFC 3857 §5.1).
	OnWatcher func(pkg, resource string, w WatcherInfo)
}

// Store keeps subscriptions across a restart: written before the 2xx is
// sent, removed when they end. A shared backend (PostgreSQL, Redis) can
// implement it.
type Store interface {
	// PutSubscription inserts or replaces the subscription with s.ID.
	PutSubscription(ctx context.Context, s StoredSubscription) error
	// DeleteSubscription removes it; an unknown id is no error.
	DeleteSubscription(ctx context.Context, id string) error
	// Subscriptions returns those that expire after now.
	Subscriptions(ctx context.Context, now time.Time) ([]StoredSubscription, error)
}

// StoredSubscription is a subscription as the Store keeps it: its dialog
// (RFC 3261 §12) in text, and the subscription proper.
type StoredSubscription struct {
	// ID is the subscription's own identifier (random, 16 hex digits).
	ID string
	// Package is the event package name, EventID the Event header's id
	// parameter ("" without).
	Package, EventID string
	// Watcher and Resource are the AORs of the subscriber and of what it
	// watches.
	Watcher, Resource string
	// State is "active" or "pending".
	State string
	// Accept lists the body types the watcher accepts, in the package's
	// order of preference, comma-separated.
	Accept string
	// EventList records Supported: eventlist in the SUBSCRIBE (RFC 4662).
	EventList bool
	// Created is when the subscription began, Expires when it lapses,
	// Updated when this record was written.
	Created, Expires, Updated time.Time
	// CallID, LocalTag (ours, the To tag of the SUBSCRIBE's 2xx) and
	// RemoteTag identify the dialog.
	CallID, LocalTag, RemoteTag string
	// Local is the From of our NOTIFYs (with our tag), Remote their To
	// (with the watcher's tag), RemoteTarget their Request-URI (the
	// watcher's Contact), RouteSet the Record-Route of the SUBSCRIBE in
	// order.
	Local, Remote, RemoteTarget string
	RouteSet                    []string
	// LocalCSeq is the CSeq of the last NOTIFY sent when the record was
	// written; RemoteCSeq the last SUBSCRIBE's.
	LocalCSeq, RemoteCSeq uint32
	// FlowProto, FlowLocal and FlowRemote are the Flow (addresses as
	// "ip:port"; "" when none).
	FlowProto, FlowLocal, FlowRemote string
}

// State is a subscription's state (RFC 6665 §4.1.3).
type State int32

// Subscription states.
const (
	StatePending State = iota + 1
	StateActive
	StateTerminated
)

// String returns "pending", "active" or "terminated", as in
// Subscription-State and in watcher info.
func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateActive:
		return "active"
	case StateTerminated:
		return "terminated"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// WatcherInfo describes one subscription to a resource, for watcher info
// (RFC 3858 §4.4: the watcher element).
type WatcherInfo struct {
	// ID identifies the subscription (Subscription.ID).
	ID string
	// Watcher is the subscriber's AOR ("" when unauthenticated).
	Watcher string
	// Display is the display name of the SUBSCRIBE's From.
	Display string
	// State is pending, active or terminated.
	State State
	// Event is what last happened (RFC 3857 §3.2.4): subscribe, approved,
	// deactivated, probation, rejected, timeout, giveup, noresource.
	Event string
	// Duration is how long the subscription has existed.
	Duration time.Duration
	// Expires is how long until it lapses (0 once terminated).
	Expires time.Duration
}
