package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/event"
	"github.com/hlas-voip/hlas/event/dialoginfo"
	"github.com/hlas-voip/hlas/event/pidf"
	"github.com/hlas-voip/hlas/event/rlmi"
	"github.com/hlas-voip/hlas/event/subscriber"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/xcap"
	"github.com/hlas-voip/hlas/xcap/resourcelists"
)

// The resource list server (RFC 4662): a SUBSCRIBE with Supported:
// eventlist to a list's URI gets the state of every member of the list in
// one NOTIFY, multipart/related with an RLMI document first. The lists
// are the users' rls-services documents (RFC 4826 §4) and the
// resource-lists they point at, as XCAP or `hlas list` stored them. The
// state of members of our domains comes from the packages themselves; for
// members of other domains the server subscribes on the list owner's
// behalf (back-end subscriptions), while someone watches the list.

// Bounds of the resource list server.
const (
	// maxListMembers bounds the members of one list served (RFC 4662
	// lets the server cut a list; what is cut is logged).
	maxListMembers = 500
	// maxServices bounds the list services loaded.
	maxServices = 100000
)

// rlsService is one list service: its URI as an AOR, its owner (the only
// user who may subscribe to it), its members and its packages.
type rlsService struct {
	uri, owner string
	from       sip.URI // the owner's, From of the back-end subscriptions
	members    []rlsMember
	packages   []string // "presence", "dialog"; empty: both
}

// rlsMember is a list entry as the server reads it, once per load rather
// than per NOTIFY.
type rlsMember struct {
	resourcelists.Entry
	// key names the member's state: the AOR as the packages name it for
	// members of our domains, user@host for others; "" for an entry that
	// is no SIP URI with a user (its state is noresource).
	key   string
	local bool
	uri   sip.URI // the SUBSCRIBE's target for a member of another domain
}

// member reads a list entry.
func (s *Server) member(e resourcelists.Entry) rlsMember {
	m := rlsMember{Entry: e}
	u, err := sip.ParseURI(e.URI)
	if err != nil || !u.IsSIP() || u.User == "" {
		return m
	}
	user := strings.ToLower(sip.Unescape(u.User))
	if d, ok := s.aorDomain(&u); ok {
		m.key, m.local = user+"@"+d, true
	} else {
		m.key, m.uri = user+"@"+strings.ToLower(u.Hostname()), u
	}
	return m
}

func (svc *rlsService) serves(pkg string) bool {
	return len(svc.packages) == 0 || slices.Contains(svc.packages, pkg)
}

// rlsSub is what the server remembers of one list subscription between
// two NOTIFYs: a digest of each member's state as last sent, for partial
// notifications (RFC 4662 §5.2).
type rlsSub struct {
	sent map[string]uint64 // member → digest of what was sent
	// back is the back-end subscriptions this subscription needs.
	back []backSpec
}

// backSpec is one back-end subscription: its key (pkg|owner|member), and
// what to subscribe to.
type backSpec struct {
	key      string
	pkg      string
	from, to sip.URI
}

// rls is the resource list server's state.
type rls struct {
	ev *events

	// loadMu orders the loads of the events goroutine and the XCAP
	// server's, so an older load never replaces a newer one.
	loadMu sync.Mutex

	mu       sync.Mutex
	services map[string]*rlsService // service AOR → service
	byMember map[string][]string    // member AOR → service AORs listing it
	version  int64                  // of the XCAP documents loaded
	subs     map[string]*rlsSub     // subscription id → state

	// Back-end subscriptions, keyed by pkg|owner|member, shared by the
	// subscriptions to lists of one owner with the same member. The list
	// subscriptions say what they need (rlsSub.back); the events
	// goroutine alone starts and stops them (reconcile), so a start and a
	// stop of one key never race, and no client call happens inside a
	// NOTIFY's rendering.
	back      *subscriber.Client
	running   map[string]bool
	backState map[string]subscriber.State
	poke      chan struct{} // capacity 1: reconcile soon
}

func newRLS(ev *events) *rls {
	return &rls{ev: ev, services: map[string]*rlsService{}, byMember: map[string][]string{},
		subs: map[string]*rlsSub{}, running: map[string]bool{}, backState: map[string]subscriber.State{},
		poke: make(chan struct{}, 1)}
}

func (r *rls) wake() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// reconcile starts the back-end subscriptions some list subscription
// needs and stops those none needs any more. Only the events goroutine
// calls it.
func (r *rls) reconcile() {
	r.mu.Lock()
	want := map[string]backSpec{}
	for _, st := range r.subs {
		for _, b := range st.back {
			want[b.key] = b
		}
	}
	var start []backSpec
	var stop []string
	for k, b := range want {
		if !r.running[k] {
			r.running[k] = true
			start = append(start, b)
		}
	}
	for k := range r.running {
		if _, ok := want[k]; !ok {
			delete(r.running, k)
			delete(r.backState, k)
			stop = append(stop, k)
		}
	}
	r.mu.Unlock()
	for _, k := range stop {
		r.back.Unsubscribe(k)
	}
	for _, b := range start {
		accept := []string{"application/pidf+xml"}
		if b.pkg == "dialog" {
			accept = []string{"application/dialog-info+xml"}
		}
		if err := r.back.Subscribe(b.key, sip.Address{URI: b.from}, b.to, b.pkg, accept); err != nil {
			r.ev.log.Warn("back-end subscription", "member", b.to.String(), "err", err)
		}
	}
}

// service returns the list service at aor, nil when none.
func (r *rls) service(aor string) *rlsService {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.services[aor]
}

// poll reloads the services when the XCAP documents changed.
func (r *rls) poll() {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	v, err := r.ev.s.store.XCAPVersion(ctx)
	cancel()
	r.mu.Lock()
	same := v == r.version
	r.mu.Unlock()
	if err != nil || same {
		return
	}
	if err := r.load(v); err != nil {
		r.ev.log.Error("resource lists", "err", err)
	}
}

// load reads every rls-services document and the lists they name. A
// store failure leaves the lists loaded before in place (the next poll
// tries again); a document or reference that does not resolve drops that
// service alone.
func (r *rls) load(version int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	docs, err := r.ev.s.store.XCAPDocuments(ctx, "rls-services", "")
	if err != nil {
		return err
	}
	lists := map[string]store.XCAPDocument{} // owner/name → resource-lists document
	services := map[string]*rlsService{}
	for _, d := range docs {
		doc, err := resourcelists.ParseServices(d.Body)
		if err != nil {
			r.ev.log.Warn("rls-services document", "owner", d.Owner, "name", d.Name, "err", err)
			continue
		}
		for _, sv := range doc.Services {
			aor, ok := r.ev.s.listAOR(sv.URI)
			if !ok {
				r.ev.log.Warn("list service outside our domains", "owner", d.Owner, "uri", sv.URI)
				continue
			}
			if other, dup := services[aor]; dup {
				r.ev.log.Warn("list service URI taken", "uri", sv.URI, "owner", d.Owner, "holder", other.owner)
				continue
			}
			if len(services) >= maxServices {
				continue
			}
			if r.ev.isUser(ctx, aor) {
				// A user's own address is never a list: a document
				// naming one must not hide the user's presence.
				r.ev.log.Warn("list service URI is a user's", "owner", d.Owner, "uri", sv.URI)
				continue
			}
			svc := &rlsService{uri: aor, owner: d.Owner}
			for _, p := range sv.Packages {
				svc.packages = append(svc.packages, strings.ToLower(p))
			}
			var list *resourcelists.List
			if sv.List != nil {
				list = sv.List
			} else {
				list, err = r.resolve(ctx, d.Owner, sv.ResourceList, lists)
				if err != nil {
					if errors.As(err, new(storeFailure)) {
						return err
					}
					r.ev.log.Warn("list of a service", "service", sv.URI, "ref", sv.ResourceList, "err", err)
					continue
				}
			}
			entries := list.Flatten(maxListMembers + 1)
			if len(entries) > maxListMembers {
				r.ev.log.Warn("list cut", "service", sv.URI, "max", maxListMembers)
				entries = entries[:maxListMembers]
			}
			svc.from, _ = sip.ParseURI("sip:" + d.Owner)
			svc.members = make([]rlsMember, len(entries))
			for i, e := range entries {
				svc.members[i] = r.ev.s.member(e)
			}
			services[aor] = svc
		}
	}
	byMember := map[string][]string{}
	for aor, svc := range services {
		for _, m := range svc.members {
			if m.key != "" {
				byMember[m.key] = append(byMember[m.key], aor)
			}
		}
	}
	r.mu.Lock()
	old := r.services
	r.services, r.byMember, r.version = services, byMember, version
	r.mu.Unlock()
	// Subscriptions to a list that changed get its full state; those to
	// a list that went, or to a package it no longer serves, a final
	// NOTIFY (noresource).
	for aor, svc := range services {
		o := old[aor]
		sameEntries := o != nil && slices.EqualFunc(o.members, svc.members, func(a, b rlsMember) bool { return a.Entry == b.Entry })
		if sameEntries && o.owner == svc.owner && slices.Equal(o.packages, svc.packages) {
			continue
		}
		for _, pkg := range []string{"presence", "dialog"} {
			if !svc.serves(pkg) {
				r.ev.n.End(pkg, aor, "noresource")
			}
		}
		r.restate(aor)
	}
	for aor := range old {
		if services[aor] == nil {
			r.ev.n.End("presence", aor, "noresource")
			r.ev.n.End("dialog", aor, "noresource")
		}
	}
	return nil
}

// restate sends the subscriptions of a list its full state anew.
func (r *rls) restate(aor string) {
	for _, pkg := range []string{"presence", "dialog"} {
		for _, w := range r.ev.n.Watchers(pkg, aor) {
			r.mu.Lock()
			if st := r.subs[w.ID]; st != nil {
				st.sent = nil
			}
			r.mu.Unlock()
		}
		r.ev.n.Changed(pkg, aor)
	}
}

// resolve returns the <list> an XCAP URI in a <resource-list> element
// names: the server's own resource-lists documents, found by the path
// after the XCAP root, whatever the host and root are.
func (r *rls) resolve(ctx context.Context, owner, ref string, cache map[string]store.XCAPDocument) (*resourcelists.List, error) {
	x, ok := xcap.ParseRef(ref)
	if !ok || x.AUID != "resource-lists" {
		return nil, errNotXCAPList
	}
	if x.User != owner {
		// A service names its owner's lists only: another user's
		// would be read with the service owner's eyes.
		return nil, errOthersList
	}
	key := owner + "/" + x.Doc
	d, seen := cache[key]
	if !seen {
		var err error
		if d, err = r.ev.s.store.XCAPDocument(ctx, "resource-lists", owner, x.Doc); errors.Is(err, store.ErrNotFound) {
			return nil, err
		} else if err != nil {
			return nil, storeFailure{err}
		}
		cache[key] = d
	}
	if x.Selector == "" {
		all, err := resourcelists.Parse(d.Body)
		if err != nil {
			return nil, err
		}
		return &resourcelists.List{Lists: all.Lists}, nil
	}
	el, err := xcap.Select(d.Body, resourcelists.Namespace, x.Selector, nil)
	if err != nil {
		return nil, err
	}
	return resourcelists.ParseList(el)
}

type rlsError string

func (e rlsError) Error() string { return string(e) }

const (
	errNotXCAPList = rlsError("not a resource-lists XCAP URI of this server")
	errOthersList  = rlsError("a list of another user")
)

// storeFailure is a store that failed while the lists were read: the
// load stops and keeps the lists it had, where a reference to nothing
// drops that service alone.
type storeFailure struct{ err error }

func (e storeFailure) Error() string { return e.err.Error() }
func (e storeFailure) Unwrap() error { return e.err }

// listAOR is the AOR of a list service's URI when it is in our domains.
func (s *Server) listAOR(uri string) (string, bool) {
	u, err := sip.ParseURI(uri)
	if err != nil || u.User == "" || !u.IsSIP() {
		return "", false
	}
	d, ok := s.aorDomain(&u)
	if !ok {
		return "", false
	}
	return strings.ToLower(sip.Unescape(u.User)) + "@" + d, true
}

// memberChanged tells the subscriptions to the lists holding member that
// its state changed.
func (r *rls) memberChanged(pkg, member string) {
	r.mu.Lock()
	svcs := r.byMember[member]
	r.mu.Unlock()
	for _, aor := range svcs {
		r.ev.n.Changed(pkg, aor)
	}
}

// authorize lets the owner of a list subscribe to it, nobody else.
func (r *rls) authorize(svc *rlsService, pkg, watcher string) event.Decision {
	if watcher != "" && watcher == svc.owner && svc.serves(pkg) {
		return event.Active
	}
	return event.Rejected
}

// memberState is one member's state as a list NOTIFY carries it.
type memberState struct {
	state, reason string // RLMI instance state and reason
	ct            string
	body          []byte
}

// state returns member m's state as the list's owner may see it.
func (r *rls) state(svc *rlsService, pkg string, m rlsMember, version uint32) memberState {
	switch {
	case m.key == "":
		return memberState{state: "terminated", reason: "noresource"}
	case m.local:
		return r.localState(svc.owner, pkg, m.key, version)
	}
	r.mu.Lock()
	st, ok := r.backState[backKey(pkg, svc.owner, m.key)]
	r.mu.Unlock()
	switch {
	case !ok:
		return memberState{state: "pending"}
	case st.Status == "active" && st.Body != nil:
		return memberState{state: "active", ct: st.ContentType, body: st.Body}
	case st.Status == "terminated" || st.Status == "failed":
		reason := st.Reason
		if reason == "" {
			reason = "noresource"
		}
		return memberState{state: "terminated", reason: reason}
	}
	return memberState{state: "pending"}
}

func (r *rls) localState(owner, pkg, member string, version uint32) memberState {
	ev := r.ev
	if !ev.known(context.Background(), member) {
		return memberState{state: "terminated", reason: "noresource"}
	}
	switch ev.decide(owner, member) {
	case event.Rejected:
		return memberState{state: "terminated", reason: "rejected"}
	case event.Pending:
		return memberState{state: "pending"}
	}
	polite := ev.politeBlocked(owner, member)
	if pkg == "dialog" {
		var dialogs []dialoginfo.Dialog
		if !polite {
			dialogs = ev.dialogsOf(member)
		}
		return memberState{state: "active", ct: "application/dialog-info+xml",
			body: dialoginfo.Build("sip:"+member, version, true, dialogs)}
	}
	if polite {
		return memberState{state: "active", ct: "application/pidf+xml", body: pidf.Closed("sip:" + member)}
	}
	return memberState{state: "active", ct: "application/pidf+xml", body: ev.presenceDoc(member)}
}

func backKey(pkg, owner, member string) string { return pkg + "|" + owner + "|" + member }

// document renders a list NOTIFY: the RLMI document and one part per
// member whose state is known (all of them when full, those changed since
// the last NOTIFY otherwise). The final NOTIFY of an ended subscription
// renders the full state and keeps nothing.
func (r *rls) document(svc *rlsService, sub *event.Subscription, full bool) (string, []byte) {
	pkg := sub.Package()
	live := sub.State() != event.StateTerminated
	var prev map[string]uint64
	var st *rlsSub
	if live {
		specs := r.backSpecs(svc, pkg)
		r.mu.Lock()
		st = r.subs[sub.ID()]
		if st == nil {
			st = &rlsSub{}
			r.subs[sub.ID()] = st
		}
		prev = st.sent
		changed := !slices.EqualFunc(st.back, specs, func(a, b backSpec) bool { return a.key == b.key })
		st.back = specs
		r.mu.Unlock()
		if changed {
			r.wake()
		}
	}
	if prev == nil {
		full = true
	}

	version := sub.NextVersion()
	list := rlmi.List{URI: "sip:" + svc.uri, Version: version, FullState: full}
	var parts []rlmi.Part
	sent := make(map[string]uint64, len(svc.members))
	nonce := randomHex(6)
	for i, m := range svc.members {
		ms := r.state(svc, pkg, m, version)
		h := fnv.New64a()
		h.Write([]byte(ms.state))
		h.Write([]byte{0})
		h.Write([]byte(ms.reason))
		h.Write([]byte{0})
		h.Write(ms.body)
		d := h.Sum64()
		sent[m.URI] = d
		if !full {
			if old, ok := prev[m.URI]; ok && old == d {
				continue
			}
		}
		res := rlmi.Resource{URI: m.URI}
		if m.DisplayName != "" {
			res.Names = []rlmi.Name{{Text: m.DisplayName}}
		}
		in := rlmi.Instance{ID: instanceID(m.URI), State: ms.state, Reason: ms.reason}
		if ms.body != nil {
			in.CID = nonce + "." + strconv.Itoa(i) + "@" + svcHost(svc.uri)
			parts = append(parts, rlmi.Part{CID: in.CID, ContentType: ms.ct, Body: ms.body})
		}
		res.Instances = []rlmi.Instance{in}
		list.Resources = append(list.Resources, res)
	}
	if live {
		r.mu.Lock()
		if r.subs[sub.ID()] == st {
			st.sent = sent
		}
		r.mu.Unlock()
	}
	root := nonce + "@" + svcHost(svc.uri)
	ct, body, err := rlmi.Multipart("hlas-"+nonce+"-"+randomHex(8), root, list.Append(nil), parts)
	if err != nil {
		r.ev.log.Error("list notify", "service", svc.uri, "err", err)
		return "", nil
	}
	return ct, body
}

// backSpecs are the back-end subscriptions a list needs: one per member
// of another domain.
func (r *rls) backSpecs(svc *rlsService, pkg string) []backSpec {
	var specs []backSpec
	for _, m := range svc.members {
		if m.key != "" && !m.local {
			specs = append(specs, backSpec{key: backKey(pkg, svc.owner, m.key), pkg: pkg, from: svc.from, to: m.uri})
		}
	}
	return specs
}

// ended forgets a list subscription that ended; the back-end
// subscriptions only it needed stop at the next reconcile.
func (r *rls) ended(id string) {
	r.mu.Lock()
	st := r.subs[id]
	delete(r.subs, id)
	r.mu.Unlock()
	if st != nil && len(st.back) > 0 {
		r.wake()
	}
}

// backChanged is the back-end client's news of one member.
func (r *rls) backChanged(key string, st subscriber.State) {
	r.mu.Lock()
	if !r.running[key] {
		r.mu.Unlock()
		return
	}
	r.backState[key] = st
	pkg, rest, _ := strings.Cut(key, "|")
	owner, member, _ := strings.Cut(rest, "|")
	var svcs []string
	for _, aor := range r.byMember[member] {
		if svc := r.services[aor]; svc != nil && svc.owner == owner {
			svcs = append(svcs, aor)
		}
	}
	r.mu.Unlock()
	for _, aor := range svcs {
		r.ev.n.Changed(pkg, aor)
	}
}

// instanceID names a member's instance in the RLMI, stable across
// NOTIFYs of one subscription (RFC 4662 §5.2).
func instanceID(uri string) string {
	h := fnv.New64a()
	h.Write([]byte(uri))
	return strconv.FormatUint(h.Sum64(), 36)
}

func svcHost(aor string) string {
	_, d, _ := strings.Cut(aor, "@")
	return d
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// IsList implements event.Lister for presence.
func (p presencePackage) IsList(resource string) bool { return p.ev.rls.service(resource) != nil }

// IsList implements event.Lister for dialog.
func (d dialogPackage) IsList(resource string) bool { return d.ev.rls.service(resource) != nil }
