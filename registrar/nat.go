package registrar

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// The evidence of a NAT a REGISTER carries (Binding.NAT), and what the
// server's keep-alive pinger needs from the location service: a walk over
// the bindings in bounded steps (Sweep) and the removal of a binding that
// stopped answering (Remove). docs/nat.md tells the whole rule.

// viaShowsNAT reports whether the top Via's sent-by address is not the
// address the request came from — the received parameter of RFC 3261
// §18.2.1 differs from it: a NAT rewrote the sender's address. A host name
// proves nothing, and neither does the port alone: a UA that sends from
// one socket and listens on another (sipsak does) puts its listening port
// in Via and Contact, and looks the same as a NAT that keeps the address
// and maps the port. Those are reached at their Contact under nat.contact
// auto; nat.contact flow is for the second kind.
func viaShowsNAT(req *sip.Request, src netip.AddrPort) bool {
	if len(req.Via) == 0 || !src.IsValid() {
		return false
	}
	a, ok := sip.ParseIP(strings.Trim(req.Via[0].Host, "[]"))
	return ok && a.Unmap() != src.Addr().Unmap()
}

// contactShowsNAT reports whether a Contact cannot be reached from here
// while its REGISTER came from src: its host is an address that only means
// something inside the UA's own network — private (RFC 1918, RFC 4193),
// shared (RFC 6598, carrier-grade NAT), link-local, loopback or
// unspecified — and is not the source address (a UA on the server's own
// LAN registers its private address from that address), or a name under
// .invalid (RFC 6761; WebRTC clients make one up).
func contactShowsNAT(u *sip.URI, src netip.AddrPort) bool {
	host := u.Hostname()
	a, ok := sip.ParseIP(strings.Trim(host, "[]"))
	if !ok {
		return hasSuffixFold(strings.TrimSuffix(host, "."), ".invalid")
	}
	a = a.Unmap()
	if !localOnly(a) {
		return false
	}
	return !src.IsValid() || a.WithZone("") != src.Addr().Unmap().WithZone("")
}

// sharedSpace is RFC 6598's shared address space, which carrier-grade NATs
// hand to their customers.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// localOnly reports an address that is not routed on the Internet.
func localOnly(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLoopback() || a.IsUnspecified() ||
		(a.Is4() && sharedSpace.Contains(a))
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// SweepSlots is the number of steps of a full Sweep: the slots of the
// expiry wheel.
const SweepSlots = wheelSize

// Sweep appends to dst copies of the live UDP bindings — only those
// flagged NAT when natOnly — of the records in n consecutive slots of the
// expiry wheel from slot from, and returns the slot the next call starts
// at. SweepSlots consecutive slots hold every record once, so a keep-alive
// pinger that sweeps them all once an interval, a few slots a tick, visits
// each binding about once an interval with bounded work per tick and one
// short read lock per slot. A record refreshed meanwhile moves to another
// slot and may be visited twice, or not at all, in one turn.
func (r *Registrar) Sweep(dst []Binding, from, n int, natOnly bool) ([]Binding, int) {
	l := r.loc
	now := r.env.Now().UnixNano()
	from = ((from % wheelSize) + wheelSize) % wheelSize
	n = min(max(n, 0), wheelSize)
	var buf [8]binding
	for i := range n {
		bs := buf[:0]
		l.mu.RLock()
		for _, rec := range l.wheel[(from+i)%wheelSize] {
			for j, k := 0, rec.len(); j < k; j++ {
				b := rec.at(j)
				if b.live(now) && b.proto == protoUDP && (!natOnly || b.flags&flagNAT != 0) {
					bs = append(bs, *b)
				}
			}
		}
		l.mu.RUnlock()
		for j := range bs {
			dst = append(dst, bs[j].export())
		}
	}
	return dst, (from + n) % wheelSize
}

// Errors of Remove.
var (
	// ErrBusy is a removal refused because the store's write queue is
	// full; the caller may try again later.
	ErrBusy = errors.New("registrar: registration store busy")
	// ErrClosed is a removal after Close.
	ErrClosed = errors.New("registrar: closed")
)

// Remove removes the binding id of aor as an unregistration would: from
// memory, and from the store through the same writer (a failed write is
// logged; the binding then lapses in the store at its expiry). It does
// nothing unless the binding was last refreshed at updated — the Updated
// of the Binding the caller judged: a REGISTER since then proves the UA
// alive. why goes into the log. It reports whether it removed the binding.
func (r *Registrar) Remove(aor, id string, updated time.Time, why string) (bool, error) {
	l := r.loc
	var buf [4]binding
	l.mu.Lock()
	rec := l.records[aor]
	if rec == nil {
		l.mu.Unlock()
		return false, nil
	}
	cur := rec.appendLive(buf[:0], r.env.Now().UnixNano())
	i := -1
	for j := range cur {
		if cur[j].idString() == id {
			i = j
		}
	}
	if i < 0 || cur[i].updated != updated.UnixNano() {
		l.mu.Unlock()
		return false, nil
	}
	if r.w != nil && r.w.full() {
		l.mu.Unlock()
		return false, ErrBusy
	}
	contact := cur[i].field(fieldContact)
	l.setRecordLocked(rec, slices.Delete(cur, i, i+1))
	ok := true
	if r.w != nil {
		// Queued under the location lock, as serve queues its changes,
		// so the store sees them in the order memory did.
		ok = r.w.enqueue(writeOp{del: []store.BindingKey{{AOR: aor, ID: id}}, done: &removal{r: r, aor: aor}})
	}
	l.mu.Unlock()
	r.changed(aor)
	r.log.Info("binding removed", "aor", aor, "contact", contact, "why", why)
	if !ok {
		// Closed meanwhile: gone from memory; in the store it lapses.
		return true, ErrClosed
	}
	if r.w != nil {
		r.w.settle(context.Background(), r.met.observeWrite)
	}
	return true, nil
}

// removal is told the outcome of a Remove's store write.
type removal struct {
	r   *Registrar
	aor string
}

func (m *removal) committed(err error) {
	if err != nil {
		m.r.log.Error("store binding removal", "aor", m.aor, "err", err)
	}
}
