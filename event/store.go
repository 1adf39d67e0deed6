package event

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// storeTimeout bounds one write of the store writer, and the load at start.
const storeTimeout = 10 * time.Second

// stored is the subscription as the Store keeps it. The mutex is held.
func (s *Subscription) stored(now int64) StoredSubscription {
	d := s.d
	st := s.State()
	if st == StateTerminated {
		st = s.prevState
	}
	ss := StoredSubscription{
		ID: s.id, Package: s.pkg.name, EventID: s.eventID, Watcher: s.watcher, Resource: s.resource,
		State: st.String(), Accept: strings.Join(s.accept, ", "), EventList: s.eventList,
		Created: time.Unix(0, s.created), Expires: time.Unix(0, s.expires.Load()), Updated: time.Unix(0, now),
		CallID: d.callID, LocalTag: d.localTag, RemoteTag: d.remoteTag,
		Local: d.local.String(), Remote: d.remote.String(), RemoteTarget: d.target.String(),
		RouteSet: d.routeText(), LocalCSeq: d.localSeq, RemoteCSeq: d.remoteSeq,
		FlowProto: d.flow.Proto,
	}
	if d.flow.Local.IsValid() {
		ss.FlowLocal = d.flow.Local.String()
	}
	if d.flow.Remote.IsValid() {
		ss.FlowRemote = d.flow.Remote.String()
	}
	return ss
}

// storeDirtyLocked queues s for the writer: written when alive, deleted
// when ended, as it is when the writer gets to it.
func (n *Notifier) storeDirtyLocked(s *Subscription) {
	if n.dirty == nil {
		return
	}
	n.dirty[s] = struct{}{}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// writer writes the queued changes until Close, then what is left.
func (n *Notifier) writer() {
	defer close(n.wdone)
	for {
		select {
		case <-n.kick:
			n.flush()
		case <-n.stop:
			n.flush()
			return
		}
	}
}

// flush writes the subscriptions queued since the last flush.
func (n *Notifier) flush() {
	n.mu.Lock()
	if len(n.dirty) == 0 {
		n.mu.Unlock()
		return
	}
	now := n.now()
	puts := make([]StoredSubscription, 0, len(n.dirty))
	var dels []string
	for s := range n.dirty {
		if s.term == "" && s.resIdx >= 0 {
			puts = append(puts, s.stored(now))
		} else {
			dels = append(dels, s.id)
		}
	}
	clear(n.dirty)
	n.mu.Unlock()
	for _, ss := range puts {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		if err := n.env.Store.PutSubscription(ctx, ss); err != nil {
			n.log.Warn("subscription not stored", "id", ss.ID, "err", err)
		}
		cancel()
	}
	for _, id := range dels {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		if err := n.env.Store.DeleteSubscription(ctx, id); err != nil {
			n.log.Warn("ended subscription not deleted", "id", id, "err", err)
		}
		cancel()
	}
}

// resumeSeq is the local CSeq a dialog resumes with after a restart. The
// store is not written per NOTIFY, so the last CSeq sent is unknown; but
// the NOTIFYs sent since the record was written are bounded: the one
// answering the SUBSCRIBE that wrote it, at most one per MinInterval for
// changes (or a millisecond, with no rate limit worth the name), and one
// per subscription of the dialog for each. Resuming above that bound keeps
// the CSeq increasing (RFC 3261 §12.2.1.1) at the cost of a gap.
func resumeSeq(stored uint32, updated, now time.Time, minInterval time.Duration, subs int) uint32 {
	step := max(minInterval, time.Millisecond)
	gap := uint64(3)
	if el := now.Sub(updated); el > 0 {
		gap += uint64(el / step)
	}
	gap *= uint64(max(subs, 1))
	seq := uint64(stored) + gap
	if seq > 1<<32-1 {
		seq = 1<<32 - 1
	}
	return uint32(seq)
}

// load resumes the stored subscriptions: dialogs rebuilt, indexes and
// expiry timers as before the restart. Records that cannot be used (an
// unknown package, unparseable addresses) are deleted.
func (n *Notifier) load() error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	nowT := n.clock.Now()
	list, err := n.env.Store.Subscriptions(ctx, nowT)
	if err != nil {
		return fmt.Errorf("event: load subscriptions: %w", err)
	}
	now := nowT.UnixNano()
	type dkey struct{ callID, tag string }
	groups := map[dkey][]StoredSubscription{}
	var order []dkey
	for _, ss := range list {
		k := dkey{ss.CallID, ss.LocalTag}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], ss)
	}
	var bad []string
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range order {
		g := groups[k]
		d, err := n.restoreDialog(g, nowT)
		if err != nil {
			n.log.Warn("stored subscription dialog unusable", "call_id", k.callID, "err", err)
			for _, ss := range g {
				bad = append(bad, ss.ID)
			}
			continue
		}
		for _, ss := range g {
			pe := n.lookup(ss.Package)
			var st State
			switch ss.State {
			case "active":
				st = StateActive
			case "pending":
				st = StatePending
			}
			if pe == nil || st == 0 || !ss.Expires.After(nowT) || n.count >= n.cfg.MaxSubscriptions {
				bad = append(bad, ss.ID)
				continue
			}
			accept := negotiate(strings.Split(ss.Accept, ","), pe.accept)
			if accept == nil {
				accept = pe.accept[:1:1]
			}
			s := n.newSub(pe, d, ss.ID, ss.Watcher, ss.Resource, ss.EventID, "", accept, ss.EventList, st,
				ss.Created.UnixNano(), ss.Expires.UnixNano())
			// Document versions (RFC 3680, 4235, 3858, 4662) must keep
			// rising across the restart. Each document went out in a
			// NOTIFY of this dialog whose CSeq exceeded its version, and
			// the resumed CSeq is above every CSeq sent: start there.
			s.docs.Store(d.localSeq)
			s.ready = true
			n.addLocked(s, now)
		}
	}
	if len(bad) > 0 {
		for _, id := range bad {
			if err := n.env.Store.DeleteSubscription(ctx, id); err != nil {
				n.log.Warn("unusable subscription not deleted", "id", id, "err", err)
			}
		}
	}
	if c := n.count; c > 0 {
		n.log.Info("subscriptions resumed", "count", c)
	}
	return nil
}

// restoreDialog rebuilds the dialog the subscriptions g share.
func (n *Notifier) restoreDialog(g []StoredSubscription, now time.Time) (*dialogState, error) {
	ss := g[0]
	d, err := newDialogState(ss.CallID, ss.Local, ss.Remote, ss.RemoteTarget, ss.RouteSet)
	if err != nil {
		return nil, err
	}
	if d.localTag != ss.LocalTag || d.remoteTag != ss.RemoteTag {
		return nil, errDialogText
	}
	var seq uint32
	var updated time.Time
	for _, x := range g {
		seq = max(seq, x.LocalCSeq)
		d.remoteSeq = max(d.remoteSeq, x.RemoteCSeq)
		if x.Updated.After(updated) {
			updated = x.Updated
		}
	}
	d.localSeq = resumeSeq(seq, updated, now, n.cfg.MinInterval, len(g))
	d.flow.Proto = ss.FlowProto
	if ss.FlowLocal != "" {
		if d.flow.Local, err = netip.ParseAddrPort(ss.FlowLocal); err != nil {
			return nil, err
		}
	}
	if ss.FlowRemote != "" {
		if d.flow.Remote, err = netip.ParseAddrPort(ss.FlowRemote); err != nil {
			return nil, err
		}
	}
	d.contact = []sip.Address{n.env.Contact(d.flow.Proto, d.flow.Local)}
	return d, nil
}
