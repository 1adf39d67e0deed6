package event

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// Subscription is one subscription (RFC 6665 §4): a watcher's interest in
// a resource's state in one event package, inside a dialog. Its accessors
// are safe to call from a Package's Document.
type Subscription struct {
	pkg *pkgEntry
	d   *dialogState
	// text holds id, watcher, resource, event id and the display name,
	// copied out of the SUBSCRIBE in one allocation (see subText).
	text                               string
	id, watcher, resource, eventID, dn string
	eventHeader                        string // "presence;id=x", or the name
	accept                             []string
	eventList                          bool
	created                            int64 // unix ns

	state   atomic.Int32
	expires atomic.Int64 // unix ns
	// docs counts the documents packages built for it (NextVersion).
	docs atomic.Uint32

	// Under the Notifier's mutex.
	winfoEvent string // RFC 3857 event of the last change
	term       string // reason of the end; "" while alive
	prevState  State  // the state before the end (for the final NOTIFY)
	urgent     bool   // the next NOTIFY answers a SUBSCRIBE: no rate limit
	finalSent  bool   // the final NOTIFY went out, or none will
	ready      bool   // the 2xx went out: NOTIFYs may follow
	dirty      bool   // state to send
	needFull   bool   // the next NOTIFY carries full state
	inFlight   bool
	waiting    bool // in the Notifier's FIFO for a slot under MaxPending
	failures   uint8
	lastSent   int64 // unix ns of the last NOTIFY
	deadline   int64 // unix ns: NotifyTimeout of the NOTIFY in flight
	wake       int64 // unix ns: when the heap wakes it; 0 when not queued
	idx        int32 // in the heap; -1 when not
	// In the Notifier's list of NOTIFYs in flight, oldest first.
	fprev, fnext *Subscription
	resIdx       int32 // in the resource's list; -1 when not
	onDone       func(*sip.Response, error)
}

// ID identifies the subscription (random, 16 hex digits); the store's key.
func (s *Subscription) ID() string { return s.id }

// NextVersion returns 0 the first time, then 1, 2, ...: the version of the
// next document of packages that number theirs per subscription (reginfo
// RFC 3680 §5.3, dialog-info RFC 4235 §4.1, watcherinfo RFC 3858 §4.2).
// A package calls it once per document it builds. It restarts at 0 for a
// subscription restored after a restart.
func (s *Subscription) NextVersion() uint32 { return s.docs.Add(1) - 1 }

// Package is the event package's name.
func (s *Subscription) Package() string { return s.pkg.name }

// Watcher is the subscriber's authenticated AOR ("" when unauthenticated).
func (s *Subscription) Watcher() string { return s.watcher }

// Display is the display name of the SUBSCRIBE's From ("" when none).
func (s *Subscription) Display() string { return s.dn }

// Resource is the AOR subscribed to.
func (s *Subscription) Resource() string { return s.resource }

// EventID is the Event header's id parameter, "" without (RFC 6665
// §8.2.1); it tells apart subscriptions in one dialog.
func (s *Subscription) EventID() string { return s.eventID }

// Accept lists the body types the watcher accepts that the package can
// send, in the package's order of preference (never empty).
func (s *Subscription) Accept() []string { return s.accept }

// EventList reports Supported: eventlist in the SUBSCRIBE (RFC 4662).
func (s *Subscription) EventList() bool { return s.eventList }

// State is pending, active, or terminated once it ended.
func (s *Subscription) State() State { return State(s.state.Load()) }

// Expires is when the subscription lapses unless refreshed.
func (s *Subscription) Expires() time.Time { return time.Unix(0, s.expires.Load()) }

// Created is when the subscription began.
func (s *Subscription) Created() time.Time { return time.Unix(0, s.created) }

// CallID is the Call-ID of the subscription's dialog.
func (s *Subscription) CallID() string { return s.d.callID }

// subText copies the subscription's strings into one allocation and
// points the fields into it, so that no string keeps the SUBSCRIBE's
// receive buffer alive.
func (s *Subscription) setText(id, watcher, resource, eventID, display string) {
	s.text = id + "\n" + watcher + "\n" + resource + "\n" + eventID + "\n" + display
	f := strings.SplitN(s.text, "\n", 5)
	s.id, s.watcher, s.resource, s.eventID, s.dn = f[0], f[1], f[2], f[3], f[4]
	s.eventHeader = s.pkg.name
	if s.eventID != "" {
		s.eventHeader = s.pkg.name + ";id=" + s.eventID
	}
}

// dialogState is the notifier's side of a subscription dialog (RFC 3261
// §12.1.1, as the UAS of the SUBSCRIBE): the text of its addresses is held
// in one string, parsed once into the typed values. Its mutable parts
// change under the Notifier's mutex. A dialog usually carries one
// subscription; several share one when the watcher reuses it with other
// Event ids (RFC 6665 §4.5.2).
type dialogState struct {
	text          string
	callID        string
	localTag      string
	remoteTag     string
	local, remote sip.Address
	target        sip.URI
	routes        []sip.Address
	localSeq      uint32
	remoteSeq     uint32
	flow          Flow
	contact       []sip.Address // ours, one element, shared read-only
	subs          []*Subscription
}

var errDialogText = errors.New("event: unusable dialog addresses")

// newDialogState builds the dialog from its parts as text (rendered
// addresses), copying them into one string. local must carry our tag,
// remote the watcher's.
func newDialogState(callID, local, remote, target string, routes []string) (*dialogState, error) {
	var b strings.Builder
	b.Grow(len(callID) + len(local) + len(remote) + len(target) + 4 + 32*len(routes))
	for _, p := range append([]string{callID, local, remote, target}, routes...) {
		if strings.ContainsAny(p, "\n\r") {
			return nil, errDialogText
		}
		b.WriteString(p)
		b.WriteByte('\n')
	}
	d := &dialogState{text: b.String()}
	f := strings.Split(d.text[:len(d.text)-1], "\n")
	d.callID = f[0]
	var err error
	if d.local, err = sip.ParseAddress(f[1]); err != nil {
		return nil, err
	}
	if d.remote, err = sip.ParseAddress(f[2]); err != nil {
		return nil, err
	}
	if d.target, err = sip.ParseURI(f[3]); err != nil {
		return nil, err
	}
	d.localTag, d.remoteTag = d.local.Tag(), d.remote.Tag()
	if d.callID == "" || d.localTag == "" || d.remoteTag == "" {
		return nil, errDialogText
	}
	if len(f) > 4 {
		d.routes = make([]sip.Address, len(f)-4)
		for i, r := range f[4:] {
			if d.routes[i], err = sip.ParseAddress(r); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// dialogFromRequest builds the UAS dialog of a SUBSCRIBE answered with our
// tag localTag (RFC 3261 §12.1.1): route set = Record-Route in order,
// remote target = Contact, remote CSeq = the request's.
func dialogFromRequest(req *sip.Request, localTag string) (*dialogState, error) {
	local := req.To
	local.Params = local.Params.Set("tag", localTag)
	routes := make([]string, len(req.RecordRoute))
	for i := range req.RecordRoute {
		routes[i] = req.RecordRoute[i].String()
	}
	d, err := newDialogState(req.CallID, local.String(), req.From.String(), req.Contact[0].URI.String(), routes)
	if err != nil {
		return nil, err
	}
	d.remoteSeq = req.CSeq.Seq
	return d, nil
}

// setTarget replaces the remote target after a refresh whose Contact
// differs (RFC 6665 §4.1.2.1 makes SUBSCRIBE a target refresh request).
// The text is rebuilt only then.
func (d *dialogState) setTarget(u sip.URI) {
	if u.Equal(&d.target) {
		return
	}
	nd, err := newDialogState(d.callID, d.local.String(), d.remote.String(), u.String(), d.routeText())
	if err != nil {
		return
	}
	d.text, d.callID, d.localTag, d.remoteTag = nd.text, nd.callID, nd.localTag, nd.remoteTag
	d.local, d.remote, d.target, d.routes = nd.local, nd.remote, nd.target, nd.routes
}

func (d *dialogState) routeText() []string {
	out := make([]string, len(d.routes))
	for i := range d.routes {
		out[i] = d.routes[i].String()
	}
	return out
}

// notify builds the next NOTIFY of the dialog (RFC 3261 §12.2.1.1): From
// with our tag, To with theirs, the next CSeq, Request-URI and Route from
// the remote target and route set (loose or strict routing), our Contact,
// and Event and Subscription-State (RFC 6665 §8.2.1, §8.2.3).
func (d *dialogState) notify(s *Subscription, subState, userAgent string) *sip.Request {
	d.localSeq++
	blk := new(notifyBlock)
	r := &blk.req
	r.Method, r.Version = sip.NOTIFY, "SIP/2.0"
	r.From, r.To, r.CallID = d.local, d.remote, d.callID
	r.CSeq = sip.CSeq{Seq: d.localSeq, Method: sip.NOTIFY}
	r.MaxForwards = 70
	switch {
	case len(d.routes) == 0:
		r.URI = d.target
	case d.routes[0].URI.Params.Has("lr"):
		r.URI = d.target
		r.Route = d.routes[:len(d.routes):len(d.routes)]
	default:
		r.URI = d.routes[0].URI
		r.URI.Params = r.URI.Params.Del("method")
		r.URI.Headers = ""
		r.Route = make([]sip.Address, 0, len(d.routes))
		r.Route = append(r.Route, d.routes[1:]...)
		r.Route = append(r.Route, sip.Address{URI: d.target})
	}
	r.Contact = d.contact
	r.Fields = blk.fields[:0]
	r.Add("Event", s.eventHeader)
	r.Add("Subscription-State", subState)
	if userAgent != "" {
		r.Add("User-Agent", userAgent)
	}
	return r
}

// notifyBlock is a NOTIFY with room for its header fields (Event,
// Subscription-State, User-Agent, and Require or Content-Type's company):
// one allocation per NOTIFY instead of two.
type notifyBlock struct {
	req    sip.Request
	fields [4]sip.Field
}

// subscriptionState writes the Subscription-State value (RFC 6665
// §8.2.3): "active;expires=N", "pending;expires=N", or
// "terminated;reason=R".
func subscriptionState(st State, left time.Duration, reason string) string {
	if reason != "" {
		return "terminated;reason=" + reason
	}
	secs := int64((left + time.Second - 1) / time.Second)
	if secs < 0 {
		secs = 0
	}
	var b [32]byte
	p := b[:0]
	if st == StatePending {
		p = append(p, "pending;expires="...)
	} else {
		p = append(p, "active;expires="...)
	}
	p = strconv.AppendInt(p, secs, 10)
	return string(p)
}

// isList reports whether s is a subscription to a resource list, which
// asked for one (RFC 4662).
func (s *Subscription) isList() bool {
	if !s.eventList {
		return false
	}
	l, ok := s.pkg.p.(Lister)
	return ok && l.IsList(s.resource)
}
