//go:build linux

package plane

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// forwardObj is bpf/forward.c compiled (go generate, gen.go).
//
//go:embed forward_bpf.o
var forwardObj []byte

// key4, fwd4 and stat4 are the C structs of bpf/forward.c; addresses
// and ports are in network byte order, as in the packet.
type key4 struct {
	Daddr, Saddr [4]byte
	Dport, Sport [2]byte
}

type fwd4 struct {
	Saddr, Daddr [4]byte
	Sport, Dport [2]byte
	Ifindex      uint32
	Iif          uint32
	Slot         uint32
}

type stat4 struct {
	Packets, Bytes, Last uint64
}

// key6 and fwd6 are key4 and fwd4 for IPv6 legs.
type key6 struct {
	Daddr, Saddr [16]byte
	Dport, Sport [2]byte
}

type fwd6 struct {
	Saddr, Daddr [16]byte
	Sport, Dport [2]byte
	Ifindex      uint32
	Iif          uint32
	Slot         uint32
}

// resyncEvery bounds how often the flows' routes are looked up again
// while links or routes keep changing.
const resyncEvery = 5 * time.Second

// kernel is the fast path: the tcx program attached to the host's
// interfaces and its two maps. The userspace plane stays the authority:
// it writes an entry for a party's RTP flow only while it would itself
// forward that flow's packets to the same place, and removes it before
// that stops being true.
type kernel struct {
	fwd, fwd6, stats *ebpf.Map
	prog             *ebpf.Program

	// mu guards closed and the maps' use: Close waits for the calls in
	// progress and the ones after it do nothing.
	mu     sync.RWMutex
	closed bool

	// nlMu serialises requests on the handle's netlink socket and
	// guards routes, the answers so far (a latch costs no look-up for a
	// pair of addresses seen before); the watcher empties it on every
	// change of links or routes.
	nlMu   sync.Mutex
	nl     *netlink.Handle
	routes map[[2]netip.Addr]int

	linkMu sync.Mutex
	links  map[int]link.Link // by interface index

	// The watcher follows links and routes (nil done: not started).
	done    chan struct{}
	watched sync.WaitGroup

	entries  atomic.Int64
	failures atomic.Uint64 // entries the kernel refused, or routes not found
}

// newKernel loads the program with tables for legs legs and attaches it
// at the ingress of every Ethernet-like interface (loopback included)
// of the network namespace. It refuses where IPsec policies exist: the
// program's redirect would send in the clear what the stack encrypts.
func newKernel(legs int) (*kernel, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(forwardObj))
	if err != nil {
		return nil, fmt.Errorf("plane: kernel path: %w", err)
	}
	for _, m := range []string{"fwd4", "fwd6", "stats"} {
		spec.Maps[m].MaxEntries = uint32(legs)
	}
	var objs struct {
		Fwd4    *ebpf.Map     `ebpf:"fwd4"`
		Fwd6    *ebpf.Map     `ebpf:"fwd6"`
		Stats   *ebpf.Map     `ebpf:"stats"`
		Forward *ebpf.Program `ebpf:"forward"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("plane: kernel path: loading: %w", err)
	}
	k := &kernel{fwd: objs.Fwd4, fwd6: objs.Fwd6, stats: objs.Stats, prog: objs.Forward, links: map[int]link.Link{}}
	if err := k.start(); err != nil {
		k.close()
		return nil, err
	}
	return k, nil
}

// start checks for IPsec and attaches the program to the interfaces.
func (k *kernel) start() error {
	var err error
	if k.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_XFRM); err != nil {
		return fmt.Errorf("plane: kernel path: netlink: %w", err)
	}
	pols, err := k.nl.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("plane: kernel path: reading IPsec policies: %w", err)
	}
	if len(pols) > 0 {
		return fmt.Errorf("plane: kernel path: %d IPsec policies are set, which it would bypass", len(pols))
	}
	links, err := k.nl.LinkList()
	if err != nil {
		return fmt.Errorf("plane: kernel path: %w", err)
	}
	var errs []error
	for _, l := range links {
		if err := k.attach(l); err != nil {
			errs = append(errs, err)
		}
	}
	if len(k.links) == 0 {
		return fmt.Errorf("plane: kernel path: no interface to attach to: %w", errors.Join(errs...))
	}
	return nil
}

// attach attaches the program to l if its frames have an Ethernet header
// (the program reads one before the IP header; tun or WireGuard devices
// keep the userspace path) and it is not attached yet.
func (k *kernel) attach(l netlink.Link) error {
	a := l.Attrs()
	if a.EncapType != "ether" && a.EncapType != "loopback" {
		return nil
	}
	k.linkMu.Lock()
	defer k.linkMu.Unlock()
	if k.links[a.Index] != nil {
		return nil
	}
	tl, err := link.AttachTCX(link.TCXOptions{Interface: a.Index, Program: k.prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("attaching to %s: %w", a.Name, err)
	}
	k.links[a.Index] = tl
	return nil
}

// detach forgets the link of an interface that is gone (the kernel
// detached the program with it; the link's descriptor is closed here, so
// that interfaces coming and going, as containers' do, leak none).
func (k *kernel) detach(index int) {
	k.linkMu.Lock()
	defer k.linkMu.Unlock()
	if l := k.links[index]; l != nil {
		l.Close()
		delete(k.links, index)
	}
}

// attached is how many interfaces have the program.
func (k *kernel) attached() int {
	k.linkMu.Lock()
	defer k.linkMu.Unlock()
	return len(k.links)
}

// watch follows the namespace's links and routes until close: a new
// interface gets the program, and any change of links or routes makes
// every flow's route be looked up again (changed, a burst at a time,
// by resync).
func (k *kernel) watch(log *slog.Logger, resync func()) error {
	links := make(chan netlink.LinkUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	k.done = make(chan struct{})
	onErr := func(err error) {
		select {
		case <-k.done: // the subscriptions' sockets were closed
		default:
			log.Warn("media kernel path: watching links and routes", "err", err)
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, k.done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(k.done)
		return fmt.Errorf("plane: kernel path: watching links: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, k.done, netlink.RouteSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(k.done)
		for range links { // the subscription closes it once done is closed
		}
		return fmt.Errorf("plane: kernel path: watching routes: %w", err)
	}
	k.watched.Add(1)
	go func() {
		defer k.watched.Done()
		var settle <-chan time.Time
		var last time.Time
		for links != nil || routes != nil {
			select {
			case u, ok := <-links:
				if !ok {
					links = nil
					continue
				}
				k.forgetRoutes()
				switch {
				case u.Link == nil:
				case u.Header.Type == unix.RTM_NEWLINK:
					if err := k.attach(u.Link); err != nil {
						log.Info("media kernel path: a new interface keeps the userspace path", "err", err)
					}
				case u.Header.Type == unix.RTM_DELLINK:
					k.detach(u.Link.Attrs().Index)
				}
			case _, ok := <-routes:
				if !ok {
					routes = nil
					continue
				}
				k.forgetRoutes()
			case <-settle:
				settle = nil
				last = time.Now()
				resync()
				continue
			}
			if settle == nil {
				// A change is followed within 100 ms; a routing table
				// that keeps changing (a BGP feed) costs one look-up per
				// flow every few seconds, not one per update.
				settle = time.After(max(100*time.Millisecond, time.Until(last.Add(resyncEvery))))
			}
		}
	}()
	return nil
}

func (k *kernel) close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	if k.done != nil {
		close(k.done)
		k.watched.Wait()
	}
	k.linkMu.Lock()
	for _, l := range k.links {
		l.Close()
	}
	k.links = nil
	k.linkMu.Unlock()
	if k.nl != nil {
		k.nl.Close()
	}
	for _, c := range []interface{ Close() error }{k.prog, k.fwd, k.fwd6, k.stats} {
		if c != nil {
			c.Close()
		}
	}
}

// route is the interface a datagram from src to dst leaves by, for a
// destination the stack would send to (a unicast or local route).
func (k *kernel) route(src, dst netip.Addr) (int, error) {
	k.nlMu.Lock()
	defer k.nlMu.Unlock()
	if i, ok := k.routes[[2]netip.Addr{src, dst}]; ok {
		return i, nil
	}
	rs, err := k.nl.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{SrcAddr: src.AsSlice()})
	if err != nil {
		return 0, err
	}
	if len(rs) == 0 || rs[0].LinkIndex <= 0 || rs[0].Type != unix.RTN_UNICAST && rs[0].Type != unix.RTN_LOCAL {
		return 0, fmt.Errorf("no unicast route from %v to %v", src, dst)
	}
	if k.routes == nil || len(k.routes) >= maxRoutes {
		k.routes = map[[2]netip.Addr]int{}
	}
	k.routes[[2]netip.Addr{src, dst}] = rs[0].LinkIndex
	return rs[0].LinkIndex, nil
}

// maxRoutes bounds the route cache: past it, it starts again empty.
const maxRoutes = 1 << 16

// forgetRoutes empties the route cache (links or routes changed).
func (k *kernel) forgetRoutes() {
	k.nlMu.Lock()
	k.routes = nil
	k.nlMu.Unlock()
}

// kflow is a party's RTP flow as the kernel's table holds it: from src to
// the leg at local, sent on from the partner leg at from to dst, out of
// interface out, arriving on in; counted in stats slot slot.
type kflow struct {
	local, src, from, dst netip.AddrPort
	out, in, slot         uint32
}

// put writes the entry into the table of its family.
func (k *kernel) put(e kflow) error {
	if e.local.Addr().Is4() {
		return k.fwd.Update(key4{Daddr: e.local.Addr().As4(), Saddr: e.src.Addr().As4(), Dport: be16(e.local.Port()), Sport: be16(e.src.Port())},
			fwd4{Saddr: e.from.Addr().As4(), Daddr: e.dst.Addr().As4(), Sport: be16(e.from.Port()), Dport: be16(e.dst.Port()),
				Ifindex: e.out, Iif: e.in, Slot: e.slot}, ebpf.UpdateAny)
	}
	return k.fwd6.Update(key6{Daddr: e.local.Addr().As16(), Saddr: e.src.Addr().As16(), Dport: be16(e.local.Port()), Sport: be16(e.src.Port())},
		fwd6{Saddr: e.from.Addr().As16(), Daddr: e.dst.Addr().As16(), Sport: be16(e.from.Port()), Dport: be16(e.dst.Port()),
			Ifindex: e.out, Iif: e.in, Slot: e.slot}, ebpf.UpdateAny)
}

// del deletes the entry of e's key.
func (k *kernel) del(e kflow) error {
	var err error
	if e.local.Addr().Is4() {
		err = k.fwd.Delete(key4{Daddr: e.local.Addr().As4(), Saddr: e.src.Addr().As4(), Dport: be16(e.local.Port()), Sport: be16(e.src.Port())})
	} else {
		err = k.fwd6.Delete(key6{Daddr: e.local.Addr().As16(), Saddr: e.src.Addr().As16(), Dport: be16(e.local.Port()), Sport: be16(e.src.Port())})
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// offloadState is a leg's entry in the kernel's table. Guarded by
// Leg.kmu.
type offloadState struct {
	on  bool
	cur kflow
	// used: the leg's stats slot counts for it from base on (the slot
	// keeps counting up across the legs that use its port pair, so the
	// totals never go down).
	used bool
	base stat4
}

// want is the entry l's party's RTP flow should have, if any (without
// its interfaces): the same decision forward makes for a packet from the
// latched source, frozen until the next change of either leg.
func (l *Leg) want() (kflow, bool) {
	l.mu.Lock()
	src, local, ok := l.flow[rtpFlow].src, l.local, !l.closed && l.sec == nil
	l.mu.Unlock()
	b := l.partner.Load()
	if !ok || b == nil {
		return kflow{}, false
	}
	b.mu.Lock()
	dst, from, ok := b.flow[rtpFlow].dest(b.sig[rtpFlow]), b.local, !b.closed && b.sec == nil
	b.mu.Unlock()
	if !ok {
		return kflow{}, false
	}
	// One family throughout: the program rewrites, it does not translate.
	v4 := local.Addr().Is4()
	for _, ap := range [...]netip.AddrPort{local, src, from, dst} {
		if !plain(ap) || ap.Addr().Is4() != v4 {
			return kflow{}, false
		}
	}
	return kflow{local: local, src: src, from: from, dst: dst, slot: uint32(l.pair)}, true
}

// plain reports whether ap is an address the program handles: a
// concrete one (a leg bound to the unspecified address has no source to
// write) with a port, and no zone (a link-local IPv6 address needs one,
// which the plane does not keep).
func plain(ap netip.AddrPort) bool {
	a := ap.Addr()
	return ap.IsValid() && ap.Port() != 0 && !a.IsUnspecified() && !a.IsMulticast() && !a.Is4In6() &&
		!(a.Is6() && a.IsLinkLocalUnicast())
}

func be16(v uint16) [2]byte { return [2]byte{byte(v >> 8), byte(v)} }

// offload brings l's kernel entry in line with what the userspace plane
// would do; called after anything that may change it (a latch, a
// signalled address, a link, a Secure, a close) on l or its partner,
// and with reroute after links or routes changed. Failing, it leaves
// the flow to userspace, which stays correct.
func (p *Plane) offload(l *Leg, reroute bool) {
	k := p.kern
	if k == nil || l == nil {
		return
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return
	}
	l.kmu.Lock()
	defer l.kmu.Unlock()
	e, ok := l.want()
	st := &l.koff
	cur := st.cur
	cur.out, cur.in = 0, 0
	same := st.on && ok && e == cur
	if same && !reroute {
		return
	}
	// An entry that no longer holds goes first: until it does the kernel
	// forwards what the reader would now refuse.
	if st.on && (!ok || e.local != st.cur.local || e.src != st.cur.src) {
		k.remove(p, l)
	}
	if !ok {
		return
	}
	var err error
	var out, in int
	if out, err = k.route(e.from.Addr(), e.dst.Addr()); err == nil {
		in, err = k.route(e.local.Addr(), e.src.Addr())
	}
	if err != nil {
		k.failures.Add(1)
		p.log.Debug("media leg left to userspace: no route", "leg", l.local, "err", err)
		if st.on {
			k.remove(p, l)
		}
		return
	}
	e.out, e.in = uint32(out), uint32(in)
	if st.on && e == st.cur {
		return
	}
	if !st.used {
		// The first entry of this leg: its counts start at what the
		// slot holds now.
		if err := k.stats.Lookup(e.slot, &st.base); err != nil {
			k.failures.Add(1)
			p.log.Warn("media kernel path: reading a stats slot", "leg", l.local, "err", err)
			return
		}
		st.used = true
	}
	if err := k.put(e); err != nil {
		k.failures.Add(1)
		p.log.Warn("media kernel path: writing an entry", "leg", l.local, "err", err)
		if st.on {
			k.remove(p, l) // the old value must not stay
		}
		return
	}
	if !st.on {
		k.entries.Add(1)
	}
	st.on, st.cur = true, e
}

// remove deletes l's entry; the caller holds k.mu (read) and l.kmu.
func (k *kernel) remove(p *Plane, l *Leg) {
	if err := k.del(l.koff.cur); err != nil {
		k.failures.Add(1)
		p.log.Warn("media kernel path: removing an entry", "leg", l.local, "err", err)
	}
	l.koff.on = false
	k.entries.Add(-1)
}

// unoffload removes l's entry for good and moves what the kernel counted
// for it into the leg's own counters; l is closed.
func (p *Plane) unoffload(l *Leg) {
	k := p.kern
	if k == nil {
		return
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	l.kmu.Lock()
	defer l.kmu.Unlock()
	if k.closed {
		return
	}
	if l.koff.on {
		k.remove(p, l)
	}
	if !l.koff.used {
		return
	}
	// A packet the program was forwarding at this moment may be counted
	// in the slot after it is read: in the totals, not in the leg's.
	if s, ok := k.since(l); ok {
		l.packets.Add(s.Packets)
		l.bytes.Add(s.Bytes)
		if w := k.wall(s.Last); w > l.last.Load() {
			l.last.Store(w)
		}
	}
	l.koff.used = false
}

// live reads what the kernel has forwarded for l so far; the caller
// holds k.mu (read) and l.kmu.
func (k *kernel) live(l *Leg) (stat4, bool) {
	if k.closed || !l.koff.used {
		return stat4{}, false
	}
	return k.since(l)
}

// since is l's slot less its base; k.mu (read) and l.kmu are held.
func (k *kernel) since(l *Leg) (stat4, bool) {
	var s stat4
	if err := k.stats.Lookup(uint32(l.pair), &s); err != nil {
		return stat4{}, false
	}
	b := l.koff.base
	if s.Packets <= b.Packets {
		return stat4{}, false
	}
	return stat4{Packets: s.Packets - b.Packets, Bytes: s.Bytes - b.Bytes, Last: s.Last}, true
}

// wall converts the program's CLOCK_MONOTONIC time to unix ns.
func (k *kernel) wall(mono uint64) int64 {
	if mono == 0 {
		return 0
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Now().UnixNano() - (ts.Nano() - int64(mono))
}

// totals sums what the kernel forwarded, for the metrics: every slot,
// which only ever counts up. After close it is zero, and so are the
// metrics of a plane that is gone.
func (k *kernel) totals() (packets, bytes uint64) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return 0, 0
	}
	var cur ebpf.MapBatchCursor
	keys := make([]uint32, 256)
	vals := make([]stat4, 256)
	for {
		n, err := k.stats.BatchLookup(&cur, keys, vals, nil)
		for _, v := range vals[:n] {
			packets += v.Packets
			bytes += v.Bytes
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			// Without batch operations, one slot at a time.
			packets, bytes = 0, 0
			var key uint32
			var v stat4
			it := k.stats.Iterate()
			for it.Next(&key, &v) {
				packets += v.Packets
				bytes += v.Bytes
			}
		}
		return packets, bytes
	}
}

// resync looks every flow's route up again (links or routes changed).
func (p *Plane) resync() {
	var legs []*Leg
	for _, r := range p.readers {
		r.mu.Lock()
		for i := range r.slots {
			if l := r.slots[i].leg; l != nil {
				legs = append(legs, l)
			}
		}
		r.mu.Unlock()
	}
	for _, l := range legs {
		p.offload(l, true) // also the flows left to userspace for want of a route
	}
}
