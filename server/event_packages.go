package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/event"
	"github.com/hlas-voip/hlas/event/msgsum"
	"github.com/hlas-voip/hlas/event/pidf"
	"github.com/hlas-voip/hlas/event/reginfo"
	"github.com/hlas-voip/hlas/event/winfo"
	"github.com/hlas-voip/hlas/store"
)

// The event packages the server serves for its users, one type each:
// presence (RFC 3856) from what the presentity's devices PUBLISH, the
// message-waiting summary (RFC 3842) from the store's mailboxes, and the
// registration state (RFC 3680) from the registrar.

// sameDomain reports whether two AORs are of one domain.
func sameDomain(a, b string) bool {
	_, da, _ := strings.Cut(a, "@")
	_, db, _ := strings.Cut(b, "@")
	return da != "" && strings.EqualFold(da, db)
}

// ownOnly lets a user subscribe to its own state alone (its mailbox, its
// registrations).
func ownOnly(watcher, resource string) event.Decision {
	if watcher != "" && watcher == resource {
		return event.Active
	}
	return event.Rejected
}

// presencePackage serves "presence": the publications of the
// presentity's devices composed into one PIDF document, one tuple each.
// Who may watch is the presentity's rules' (events.decide).
type presencePackage struct{ ev *events }

func (presencePackage) Name() string                  { return "presence" }
func (presencePackage) Accept() []string              { return []string{"application/pidf+xml"} }
func (presencePackage) DefaultExpires() time.Duration { return time.Hour }

func (p presencePackage) Authorize(watcher, resource string) event.Decision {
	if svc := p.ev.rls.service(resource); svc != nil {
		return p.ev.rls.authorize(svc, "presence", watcher)
	}
	return p.ev.decide(watcher, resource)
}

func (p presencePackage) Document(sub *event.Subscription, full bool) (string, []byte) {
	if svc := p.ev.rls.service(sub.Resource()); svc != nil {
		return p.ev.rls.document(svc, sub, full)
	}
	if p.ev.politeBlocked(sub.Watcher(), sub.Resource()) {
		return "application/pidf+xml", pidf.Closed("sip:" + sub.Resource())
	}
	return "application/pidf+xml", p.ev.presenceDoc(sub.Resource())
}

// presenceDocs caches the composed presence document of each presentity
// between two changes of its publications: ten watchers of one
// presentity cost one composition, not ten.
type presenceDocs struct {
	mu sync.Mutex
	m  map[string]*presenceDoc
}

type presenceDoc struct {
	gen  uint64 // raised by every change of the presentity's state
	body []byte // nil: not composed since
}

// forget drops resource's document at a change of its publications,
// before the notifier is told.
func (c *presenceDocs) forget(resource string) {
	c.mu.Lock()
	if d := c.m[resource]; d != nil {
		d.gen++
		d.body = nil
	}
	c.mu.Unlock()
}

// presenceDoc returns resource's composed document, composing it when
// the cache has none. A composition that raced a change is not kept.
func (ev *events) presenceDoc(resource string) []byte {
	c := &ev.docs
	c.mu.Lock()
	d := c.m[resource]
	if d == nil {
		if len(c.m) >= maxCachedDocs {
			clear(c.m) // bounded: a cache, not the state
		}
		d = &presenceDoc{}
		c.m[resource] = d
	}
	body, gen := d.body, d.gen
	c.mu.Unlock()
	if body != nil {
		return body
	}
	entity := "sip:" + resource
	var docs []*pidf.Document
	// Parsed when published (pidfCodec is a publish.Parser): a change
	// costs one parse, not one for the PUBLISH and one here.
	for _, pub := range ev.pub.Documents("presence", resource) {
		if d, ok := pub.Parsed.(*pidf.Document); ok {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		body = pidf.Closed(entity)
	} else {
		body = pidf.Compose(entity, docs...)
	}
	c.mu.Lock()
	if d := c.m[resource]; d != nil && d.gen == gen {
		d.body = body
	}
	c.mu.Unlock()
	return body
}

// maxCachedDocs bounds the presence documents cached.
const maxCachedDocs = 100000

// pidfCodec checks published presence documents and keeps them parsed
// for composition (publish.Parser).
type pidfCodec struct{}

func (pidfCodec) ContentTypes() []string { return []string{"application/pidf+xml"} }
func (pidfCodec) Validate(contentType string, body []byte) error {
	_, err := pidf.Parse(body)
	return err
}
func (pidfCodec) Parse(contentType string, body []byte) (any, error) {
	d, err := pidf.Parse(body)
	if err != nil {
		return nil, err // not a nil *Document in a non-nil interface
	}
	return d, nil
}

// mwiPackage serves "message-summary" from the store's mailboxes (set by
// `hlas mwi set`, later by voicemail and the API).
type mwiPackage struct{ ev *events }

func (mwiPackage) Name() string                  { return "message-summary" }
func (mwiPackage) Accept() []string              { return []string{"application/simple-message-summary"} }
func (mwiPackage) DefaultExpires() time.Duration { return time.Hour }
func (mwiPackage) Authorize(watcher, resource string) event.Decision {
	return ownOnly(watcher, resource)
}

func (m mwiPackage) Document(sub *event.Subscription, full bool) (string, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mb, err := m.ev.s.store.Mailbox(ctx, sub.Resource())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.ev.log.Error("mailbox", "aor", sub.Resource(), "err", err)
	}
	s := msgsum.Summary{Waiting: mb.New > 0, Account: "sip:" + sub.Resource(),
		Voice: msgsum.Counts{New: uint32(mb.New), Old: uint32(mb.Old), UrgentNew: uint32(mb.UrgentNew), UrgentOld: uint32(mb.UrgentOld)}}
	return "application/simple-message-summary", s.Marshal()
}

// pollMailboxes notifies the mailboxes changed since since and returns
// the time to ask from next.
func (ev *events) pollMailboxes(since time.Time) time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := ev.s.store.MailboxesSince(ctx, since)
	if err != nil {
		ev.log.Debug("mailboxes", "err", err)
		return since
	}
	for _, m := range list {
		ev.n.Changed("message-summary", m.AOR)
		if !m.Updated.Before(since) {
			since = m.Updated.Add(time.Millisecond)
		}
	}
	return since
}

// regPackage serves "reg": a user's own bindings (RFC 3680).
type regPackage struct{ ev *events }

func (regPackage) Name() string                  { return "reg" }
func (regPackage) Accept() []string              { return []string{"application/reginfo+xml"} }
func (regPackage) DefaultExpires() time.Duration { return time.Hour }
func (regPackage) Authorize(watcher, resource string) event.Decision {
	return ownOnly(watcher, resource)
}

func (r regPackage) Document(sub *event.Subscription, full bool) (string, []byte) {
	bs := r.ev.s.registrar.Lookup(sub.Resource())
	reg := reginfo.Registration{AOR: "sip:" + sub.Resource(), ID: "r-" + sub.ID(), State: "init"}
	if len(bs) > 0 {
		reg.State = "active"
	}
	for _, b := range bs {
		reg.Contacts = append(reg.Contacts, reginfo.Contact{ID: b.ID, URI: b.Contact.URI.String(), State: "active",
			Event: "registered", Expires: uint32(max(time.Until(b.Expires).Seconds(), 0)), Q: qValue(b.Q), CallID: b.CallID, CSeq: b.CSeq})
	}
	return "application/reginfo+xml", reginfo.Build(sub.NextVersion(), true, []reginfo.Registration{reg})
}

// qValue writes a q-value in thousandths as RFC 3261 §20.10 does ("0.5").
func qValue(q int) string {
	if q >= 1000 {
		return "1"
	}
	if q <= 0 {
		return "0"
	}
	return strings.TrimRight(fmt.Sprintf("0.%03d", q), "0")
}

// winfoPackage serves "presence.winfo" (RFC 3857, 3858): a user sees who
// watches her presence. The notifier notifies it whenever a presence
// subscription to her comes, changes state or goes.
type winfoPackage struct{ ev *events }

func (winfoPackage) Name() string                  { return "presence.winfo" }
func (winfoPackage) Accept() []string              { return []string{"application/watcherinfo+xml"} }
func (winfoPackage) DefaultExpires() time.Duration { return time.Hour }
func (winfoPackage) Authorize(watcher, resource string) event.Decision {
	return ownOnly(watcher, resource)
}

func (w winfoPackage) Document(sub *event.Subscription, full bool) (string, []byte) {
	list := winfo.WatcherList{Resource: "sip:" + sub.Resource(), Package: "presence"}
	for _, wi := range append(w.ev.n.Watchers("presence", sub.Resource()), w.ev.endedSince(sub)...) {
		uri := "sip:anonymous@anonymous.invalid" // a watcher nobody authenticated (another domain's)
		if wi.Watcher != "" {
			uri = "sip:" + wi.Watcher
		}
		list.Watchers = append(list.Watchers, winfo.Watcher{ID: wi.ID, URI: uri, DisplayName: wi.Display,
			Status: wi.State.String(), Event: wi.Event, DurationSubscribed: uint32(wi.Duration / time.Second)})
	}
	return "application/watcherinfo+xml", winfo.Build(sub.NextVersion(), true, []winfo.WatcherList{list})
}
