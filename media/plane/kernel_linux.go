//go:build linux

package plane

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
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
	Slot         uint32
}

type stat4 struct {
	Packets, Bytes, Last uint64
}

// kernel is the fast path: the tcx program attached to the host's
// interfaces and its two maps. The userspace plane stays the authority:
// it writes an entry for a party's RTP flow only while it would itself
// forward that flow's packets to the same place, and removes it before
// that stops being true.
type kernel struct {
	fwd, stats *ebpf.Map
	prog       *ebpf.Program
	links      []link.Link

	// nlMu serialises route lookups on the handle's netlink socket.
	nlMu sync.Mutex
	nl   *netlink.Handle

	// Counters of closed legs' kernel forwarding, so that the exported
	// totals never go down when a leg's stats slot is cleared.
	foldPackets, foldBytes atomic.Uint64
	entries                atomic.Int64
	failures               atomic.Uint64 // entries the kernel refused, or routes not found
}

// newKernel loads the program with tables for legs legs and attaches it
// at the ingress of every Ethernet-like interface (loopback included)
// of the network namespace.
func newKernel(legs int) (k *kernel, err error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(forwardObj))
	if err != nil {
		return nil, fmt.Errorf("plane: kernel path: %w", err)
	}
	spec.Maps["fwd4"].MaxEntries = uint32(legs)
	spec.Maps["stats"].MaxEntries = uint32(legs)
	var objs struct {
		Fwd4    *ebpf.Map     `ebpf:"fwd4"`
		Stats   *ebpf.Map     `ebpf:"stats"`
		Forward *ebpf.Program `ebpf:"forward"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("plane: kernel path: loading: %w", err)
	}
	k = &kernel{fwd: objs.Fwd4, stats: objs.Stats, prog: objs.Forward}
	defer func() {
		if err != nil {
			k.close()
		}
	}()
	if k.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("plane: kernel path: netlink: %w", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("plane: kernel path: %w", err)
	}
	for _, in := range ifs {
		// The program reads an Ethernet header before the IP one; a
		// device without one (tun, WireGuard) keeps the userspace path.
		if in.Flags&net.FlagLoopback == 0 && len(in.HardwareAddr) != 6 {
			continue
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: in.Index, Program: k.prog, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return nil, fmt.Errorf("plane: kernel path: attaching to %s: %w", in.Name, err)
		}
		k.links = append(k.links, l)
	}
	if len(k.links) == 0 {
		return nil, errors.New("plane: kernel path: no interface to attach to")
	}
	return k, nil
}

func (k *kernel) close() {
	for _, l := range k.links {
		l.Close()
	}
	if k.nl != nil {
		k.nl.Close()
	}
	if k.prog != nil {
		k.prog.Close()
	}
	if k.fwd != nil {
		k.fwd.Close()
	}
	if k.stats != nil {
		k.stats.Close()
	}
}

// egress is the interface a datagram from src to dst leaves by.
func (k *kernel) egress(src, dst netip.Addr) (int, error) {
	k.nlMu.Lock()
	defer k.nlMu.Unlock()
	rs, err := k.nl.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{SrcAddr: src.AsSlice()})
	if err != nil {
		return 0, err
	}
	if len(rs) == 0 || rs[0].LinkIndex <= 0 {
		return 0, fmt.Errorf("no route from %v to %v", src, dst)
	}
	return rs[0].LinkIndex, nil
}

// offloadState is a leg's entry in the kernel's table: the key it is
// installed under and what it holds. Guarded by Leg.kmu.
type offloadState struct {
	on  bool
	key key4
	val fwd4
}

// want is the entry l's party's RTP flow should have, if any: the same
// decision forward makes for a packet from the latched source, frozen
// until the next change of either leg.
func (l *Leg) want() (key4, fwd4, bool) {
	l.mu.Lock()
	src, local, ok := l.flow[rtpFlow].src, l.local, !l.closed && l.sec == nil
	l.mu.Unlock()
	if !ok || !plain4(src) || !plain4(local) {
		return key4{}, fwd4{}, false
	}
	b := l.partner.Load()
	if b == nil {
		return key4{}, fwd4{}, false
	}
	b.mu.Lock()
	dst, from, ok := b.flow[rtpFlow].dest(b.sig[rtpFlow]), b.local, !b.closed && b.sec == nil
	b.mu.Unlock()
	if !ok || !plain4(dst) || !plain4(from) {
		return key4{}, fwd4{}, false
	}
	return key4{Daddr: local.Addr().As4(), Saddr: src.Addr().As4(), Dport: be16(local.Port()), Sport: be16(src.Port())},
		fwd4{Saddr: from.Addr().As4(), Daddr: dst.Addr().As4(), Sport: be16(from.Port()), Dport: be16(dst.Port()), Slot: uint32(l.pair)},
		true
}

// plain4 reports whether ap is an IPv4 address the program handles: a
// concrete one (a leg bound to the unspecified address has no source to
// write) with a port.
func plain4(ap netip.AddrPort) bool {
	a := ap.Addr()
	return ap.IsValid() && a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && ap.Port() != 0
}

func be16(v uint16) [2]byte { return [2]byte{byte(v >> 8), byte(v)} }

// offload brings l's kernel entry in line with what the userspace plane
// would do; called after anything that may change it (a latch, a
// signalled address, a link, a Secure, a close) on l or its partner.
// Failing, it leaves the flow to userspace, which stays correct.
func (p *Plane) offload(l *Leg) {
	k := p.kern
	if k == nil || l == nil {
		return
	}
	l.kmu.Lock()
	defer l.kmu.Unlock()
	key, val, ok := l.want()
	st := &l.koff
	if st.on && ok && key == st.key && val.Saddr == st.val.Saddr && val.Daddr == st.val.Daddr &&
		val.Sport == st.val.Sport && val.Dport == st.val.Dport {
		return
	}
	if ok {
		idx, err := k.egress(netip.AddrFrom4(val.Saddr), netip.AddrFrom4(val.Daddr))
		if err != nil {
			k.failures.Add(1)
			p.log.Debug("media leg left to userspace: no route", "leg", l.local, "err", err)
			ok = false
		} else {
			val.Ifindex = uint32(idx)
		}
	}
	if st.on && (!ok || key != st.key) {
		if err := k.fwd.Delete(st.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			p.log.Warn("media kernel path: removing an entry", "leg", l.local, "err", err)
		}
		st.on = false
		k.entries.Add(-1)
	}
	if !ok {
		return
	}
	if err := k.fwd.Update(key, val, ebpf.UpdateAny); err != nil {
		k.failures.Add(1)
		p.log.Warn("media kernel path: adding an entry", "leg", l.local, "err", err)
		return
	}
	if !st.on {
		k.entries.Add(1)
	}
	st.on, st.key, st.val = true, key, val
	l.kused = true
}

// unoffload removes l's entry for good and moves what the kernel counted
// for it into the leg's own counters; l is closed.
func (p *Plane) unoffload(l *Leg) {
	k := p.kern
	if k == nil {
		return
	}
	l.kmu.Lock()
	defer l.kmu.Unlock()
	if l.koff.on {
		if err := k.fwd.Delete(l.koff.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			p.log.Warn("media kernel path: removing an entry", "leg", l.local, "err", err)
		}
		l.koff.on = false
		k.entries.Add(-1)
	}
	if !l.kused {
		return
	}
	// The slot goes to the next leg on this port pair cleared. A packet
	// the program was forwarding at this moment may be counted in the
	// slot after it is read: one packet, lost from the statistics only.
	var s stat4
	slot := uint32(l.pair)
	if err := k.stats.Lookup(slot, &s); err == nil && s.Packets != 0 {
		k.stats.Update(slot, stat4{}, ebpf.UpdateAny)
		l.packets.Add(s.Packets)
		l.bytes.Add(s.Bytes)
		if w := k.wall(s.Last); w > l.last.Load() {
			l.last.Store(w)
		}
		k.foldPackets.Add(s.Packets)
		k.foldBytes.Add(s.Bytes)
	}
	l.kused = false
}

// live reads what the kernel has forwarded for l so far (its slot).
func (k *kernel) live(l *Leg) (stat4, bool) {
	var s stat4
	if err := k.stats.Lookup(uint32(l.pair), &s); err != nil {
		return stat4{}, false
	}
	return s, s.Packets != 0
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

// totals sums what the kernel forwarded, for the metrics: the closed
// legs' and what every slot holds now.
func (k *kernel) totals() (packets, bytes uint64) {
	packets, bytes = k.foldPackets.Load(), k.foldBytes.Load()
	var cur ebpf.MapBatchCursor
	keys := make([]uint32, 256)
	vals := make([]stat4, 256)
	for {
		n, err := k.stats.BatchLookup(&cur, keys, vals, nil)
		for _, v := range vals[:n] {
			packets += v.Packets
			bytes += v.Bytes
		}
		if err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				// Without batch operations, one slot at a time.
				packets, bytes = k.foldPackets.Load(), k.foldBytes.Load()
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
}
