//go:build linux

package plane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hlas-voip/hlas/media"
)

// Sizes of a reader's batches.
const (
	// batch is how many datagrams one recvmmsg takes from one socket. At
	// 50 packets/s a stream rarely has more than one waiting; under load
	// a batch of 32 makes one read (and one send) cost a fraction of a
	// syscall per packet.
	batch = 32
	// maxPacket is the read buffer of one datagram; longer ones (beyond
	// any Ethernet MTU) are dropped as too_big.
	maxPacket = 2048
	// maxEvents is how many ready sockets one epoll_wait returns.
	maxEvents = 64
)

// Flows of a leg, and the kind bit of its epoll registrations.
const (
	rtpFlow  = 0
	rtcpFlow = 1
)

// wakeSlot marks the eventfd's registration in every epoll set.
const wakeSlot = -1

// Plane relays the RTP and RTCP of linked legs. Safe for concurrent use.
type Plane struct {
	cfg    Config
	log    *slog.Logger
	window int64 // LatchWindow in ns
	epoch  time.Time

	readers []*reader
	next    atomic.Uint32 // round-robin over readers
	wakeFD  int
	wg      sync.WaitGroup

	// linkMu serialises Link, which rewires two or four legs.
	linkMu sync.Mutex

	pool        pool
	allocFailed atomic.Uint64

	// skew is added to the clock: tests move time on to close latch
	// windows instead of sleeping through them.
	skew atomic.Int64

	// kern is the kernel fast path; nil when it is off or unavailable.
	kern *kernel
}

// clock returns the plane's monotonic time (ns since New) and the wall
// clock (unix ns).
func (p *Plane) clock() (mono, wall int64) {
	now := time.Now()
	skew := p.skew.Load()
	return int64(now.Sub(p.epoch)) + skew, now.UnixNano() + skew
}

// pool is the port range, as pairs: pair i is ports base+2i and base+2i+1.
type pool struct {
	mu     sync.Mutex
	base   int
	used   []bool
	inUse  int
	next   int // where the next search starts: freed ports rest a while
	closed bool
}

// New binds nothing yet: it starts the readers, each with its epoll set.
func New(cfg Config) (*Plane, error) {
	cfg, err := cfg.withDefaults(runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	p := &Plane{
		cfg: cfg, log: cfg.Logger, window: int64(cfg.LatchWindow), epoch: time.Now(),
		pool: pool{base: firstPort(cfg.PortMin), used: make([]bool, pairs(cfg.PortMin, cfg.PortMax))},
	}
	p.wakeFD, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("plane: eventfd: %w", err)
	}
	for range cfg.Readers {
		r, err := newReader(p)
		if err != nil {
			p.closeReaders()
			unix.Close(p.wakeFD)
			return nil, err
		}
		p.readers = append(p.readers, r)
	}
	if cfg.Kernel != KernelOff {
		load := cfg.loadKernel
		if load == nil {
			load = newKernel
		}
		p.kern, err = load(len(p.pool.used))
		if err == nil {
			if err = p.kern.watch(p.log, p.resync); err != nil {
				p.kern.close()
				p.kern = nil
			}
		}
		switch {
		case err != nil && cfg.Kernel == KernelOn:
			p.closeReaders()
			unix.Close(p.wakeFD)
			return nil, err
		case err != nil:
			p.log.Info("media kernel path unavailable: relaying in userspace", "err", err)
		default:
			p.log.Info("media kernel path on: latched RTP is forwarded in the kernel", "interfaces", p.kern.attached())
		}
	}
	if cfg.Registerer != nil {
		c := newCollector(p.counters, p.portsInUse, p.allocFailed.Load, p.kernelTotals)
		if err := cfg.Registerer.Register(c); err != nil {
			p.closeReaders()
			p.closeKernel()
			unix.Close(p.wakeFD)
			return nil, fmt.Errorf("plane: metrics: %w", err)
		}
	}
	for _, r := range p.readers {
		p.wg.Add(1)
		go r.run()
	}
	p.log.Debug("media plane started", "port_min", cfg.PortMin, "port_max", cfg.PortMax,
		"readers", cfg.Readers, "latch_window", cfg.LatchWindow, "kernel_path", p.kern != nil)
	return p, nil
}

// Kernel reports whether the plane forwards latched RTP in the kernel.
func (p *Plane) Kernel() bool { return p.kern != nil }

func (p *Plane) closeKernel() {
	if p.kern != nil {
		p.kern.close()
	}
}

// kernelTotals is what the kernel path forwarded, for the metrics, and
// how many flows it holds.
func (p *Plane) kernelTotals() (packets, bytes uint64, flows int64, failures uint64, on bool) {
	if p.kern == nil {
		return 0, 0, 0, 0, false
	}
	packets, bytes = p.kern.totals()
	return packets, bytes, p.kern.entries.Load(), p.kern.failures.Load(), true
}

func (p *Plane) counters() []*counters {
	cs := make([]*counters, len(p.readers))
	for i, r := range p.readers {
		cs[i] = &r.c
	}
	return cs
}

func (p *Plane) portsInUse() int {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	return 2 * p.pool.inUse
}

// Close stops the readers and closes every leg's sockets; the legs'
// own Close is then a no-op.
func (p *Plane) Close() error {
	p.pool.mu.Lock()
	if p.pool.closed {
		p.pool.mu.Unlock()
		return nil
	}
	p.pool.closed = true
	p.pool.mu.Unlock()
	// The eventfd stays readable (nobody reads it): every reader's
	// epoll_wait returns it, now and at any later call.
	one := [8]byte{1}
	if _, err := unix.Write(p.wakeFD, one[:]); err != nil {
		return fmt.Errorf("plane: waking readers: %w", err)
	}
	p.wg.Wait()
	// The program stops before the sockets close: nothing is forwarded
	// from ports that another program may bind next.
	p.closeKernel()
	p.closeReaders()
	p.pool.mu.Lock()
	p.pool.inUse = 0
	p.pool.mu.Unlock()
	return unix.Close(p.wakeFD)
}

// closeReaders closes the readers' legs and epoll sets; they must not be
// running.
func (p *Plane) closeReaders() {
	for _, r := range p.readers {
		r.mu.Lock()
		for i := range r.slots {
			s := &r.slots[i]
			if s.leg == nil {
				continue
			}
			s.leg.mu.Lock()
			s.leg.closed = true
			sec := s.leg.sec
			s.leg.sec = nil
			s.leg.mu.Unlock()
			unix.Close(int(s.fd[rtpFlow]))
			unix.Close(int(s.fd[rtcpFlow]))
			s.leg = nil
			if sec != nil {
				sec.s.Detached()
			}
		}
		r.closed = true
		unix.Close(r.epfd)
		r.mu.Unlock()
	}
}

// Allocate binds a leg's RTP and RTCP sockets on addr (possibly
// unspecified) to the next free pair of the port range; ports that other
// programs hold are skipped. It returns media.ErrNoPorts when no pair is
// left.
func (p *Plane) Allocate(addr netip.Addr) (*Leg, error) {
	if !addr.IsValid() {
		return nil, errors.New("plane: allocate: no address")
	}
	addr = addr.Unmap()
	l := &Leg{p: p, v6: addr.Is6(), hz: 8000}
	pair, fds, err := p.pool.take(addr)
	if err != nil {
		if errors.Is(err, media.ErrNoPorts) {
			p.allocFailed.Add(1)
		}
		return nil, err
	}
	l.pair = int32(pair)
	l.local = netip.AddrPortFrom(addr, uint16(p.pool.base+2*pair))
	l.fd = [2]int32{int32(fds[0]), int32(fds[1])}
	r := p.readers[int(p.next.Add(1)-1)%len(p.readers)]
	if err := r.add(l); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		p.pool.release(pair)
		return nil, err
	}
	return l, nil
}

// take binds the next free pair on addr.
func (o *pool) take(addr netip.Addr) (int, [2]int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, [2]int{}, ErrClosed
	}
	for range len(o.used) {
		i := o.next
		o.next = (o.next + 1) % len(o.used)
		if o.used[i] {
			continue
		}
		port := o.base + 2*i
		rtp, err := openUDP(addr, port)
		if errors.Is(err, unix.EADDRINUSE) {
			continue
		}
		if err != nil {
			return 0, [2]int{}, fmt.Errorf("plane: bind %v: %w", netip.AddrPortFrom(addr, uint16(port)), err)
		}
		rtcp, err := openUDP(addr, port+1)
		if errors.Is(err, unix.EADDRINUSE) {
			unix.Close(rtp)
			continue
		}
		if err != nil {
			unix.Close(rtp)
			return 0, [2]int{}, fmt.Errorf("plane: bind %v: %w", netip.AddrPortFrom(addr, uint16(port+1)), err)
		}
		o.used[i] = true
		o.inUse++
		return i, [2]int{rtp, rtcp}, nil
	}
	return 0, [2]int{}, fmt.Errorf("plane: ports %d-%d on %v: %w", o.base, o.base+2*len(o.used)-1, addr, media.ErrNoPorts)
}

func (o *pool) release(i int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || !o.used[i] {
		return
	}
	o.used[i] = false
	o.inUse--
}

// Leg is one side of one media stream: the pair of sockets one party
// sends its RTP and RTCP to and receives the other party's from.
// Its methods are safe for concurrent use, also with traffic.
type Leg struct {
	p     *Plane
	r     *reader
	slot  int32
	pair  int32
	local netip.AddrPort
	v6    bool
	// fd are the RTP and RTCP sockets; they are closed only under mu with
	// closed set and under the reader's lock, so whoever holds mu with
	// closed false may send on them.
	fd [2]int32

	partner atomic.Pointer[Leg]

	packets, bytes, dropped atomic.Uint64
	last                    atomic.Int64 // unix ns of the last accepted packet

	mu     sync.Mutex
	closed bool
	mux    bool
	hz     int32
	hasRep bool
	rep    report
	sig    [2]netip.AddrPort // signalled RTP and RTCP addresses
	flow   [2]flow           // what arrives on the RTP and the RTCP socket
	// sec is the secure transport the leg terminates, with its ICE
	// state; nil for a plain leg.
	sec *secureLeg

	// kmu guards the leg's entry in the kernel path (koff); taken after
	// the kernel's mu and before the leg's mu, never while holding it.
	kmu  sync.Mutex
	koff offloadState
}

// Addr is the RTP socket's address (an even port); RTCP is on the next
// port.
func (l *Leg) Addr() netip.AddrPort { return l.local }

// SetPeer sets the party's addresses as signalled in SDP (RFC 4566 c= and
// m=, a=rtcp of RFC 3605, rtcp zero: RTP's port + 1) and whether it
// multiplexes RTCP on the RTP port (a=rtcp-mux, RFC 5761). It opens the
// latch window again. When an address changes, what was latched for it is
// forgotten: packets go to the new address until the party sends from
// elsewhere. An unspecified address (hold) receives nothing until the
// party sends.
func (l *Leg) SetPeer(rtp, rtcp netip.AddrPort, mux bool) {
	rtcp = rtcpPeer(rtp, rtcp)
	if rtp.IsValid() {
		rtp = netip.AddrPortFrom(rtp.Addr().Unmap(), rtp.Port())
	}
	now, _ := l.p.clock()
	l.mu.Lock()
	for i, a := range [2]netip.AddrPort{rtp, rtcp} {
		if a != l.sig[i] {
			l.sig[i] = a
			l.flow[i].src = netip.AddrPort{}
		}
		l.flow[i].until = now + l.p.window
	}
	l.mux = mux
	l.mu.Unlock()
	l.p.offload(l, false)
	l.p.offload(l.partner.Load(), false)
}

// SetClockRate sets the RTP clock rate of the stream (Hz) that RTCP
// jitter is counted in; default 8000.
func (l *Leg) SetClockRate(hz int) {
	if hz <= 0 || hz > 1<<30 {
		return
	}
	l.mu.Lock()
	l.hz = int32(hz)
	l.mu.Unlock()
}

// Link makes a and b partners: what a's party sends to a goes out of b's
// sockets to b's party, and the other way. A leg linked elsewhere before
// is unlinked from its old partner first. Link(a, nil) unlinks a and its
// partner. Legs must come from the same Plane.
func Link(a, b *Leg) {
	if a == nil {
		a, b = b, nil
		if a == nil {
			return
		}
	}
	if b != nil && b.p != a.p {
		panic("plane: Link of legs of two planes")
	}
	a.p.linkMu.Lock()
	oa := unlink(a)
	var ob *Leg
	if b != nil {
		ob = unlink(b)
		a.partner.Store(b)
		b.partner.Store(a)
	}
	a.p.linkMu.Unlock()
	for _, l := range [...]*Leg{a, b, oa, ob} {
		a.p.offload(l, false)
	}
}

// unlink parts l from its partner, which it returns; the caller holds
// linkMu.
func unlink(l *Leg) *Leg {
	o := l.partner.Swap(nil)
	if o != nil && o.partner.Load() == l {
		o.partner.Store(nil)
	}
	return o
}

// Stats returns what the leg saw of its party so far.
func (l *Leg) Stats() LegStats {
	st := LegStats{Dropped: l.dropped.Load()}
	// Under kmu: a closing leg moves the kernel's counts into its own.
	k := l.p.kern
	if k != nil {
		k.mu.RLock() // before kmu, as everywhere
	}
	l.kmu.Lock()
	st.Packets, st.Bytes = l.packets.Load(), l.bytes.Load()
	last := l.last.Load()
	if k != nil {
		if s, ok := k.live(l); ok {
			st.Packets += s.Packets
			st.Bytes += s.Bytes
			last = max(last, k.wall(s.Last))
		}
	}
	l.kmu.Unlock()
	if k != nil {
		k.mu.RUnlock()
	}
	if last != 0 {
		st.Last = time.Unix(0, last)
	}
	l.mu.Lock()
	if l.hasRep {
		st.Lost = l.rep.lost
		st.JitterMS = jitterMS(l.rep.jitter, int(l.hz))
	}
	l.mu.Unlock()
	return st
}

// Close unlinks the leg, closes its sockets and returns its ports to the
// pool. It may be called more than once and while packets flow: a reader
// in the middle of a batch finishes it first.
func (l *Leg) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	sec := l.sec
	l.sec = nil
	l.mu.Unlock()
	// The kernel stops forwarding to and from the leg before its ports
	// can go to another.
	l.p.unoffload(l)
	Link(l, nil)
	l.r.remove(l)
	l.p.pool.release(int(l.pair))
	if sec != nil {
		sec.s.Detached()
	}
}

// SetSecure makes the leg terminate the secure transport s (nil: none,
// a plain leg again). With a Secure, the leg's RTP port is
// demultiplexed by first byte (RFC 7983): STUN goes to s, which answers
// it; DTLS from a source that passed an ICE check goes to s; SRTP and
// SRTCP from such a source are decrypted by s and forwarded plain to
// the partner; anything else is dropped. Sources that never passed a
// check are strangers: ICE takes the place of latching, and the
// signalled addresses of SetPeer are not used. What the partner
// forwards to the party is protected by s and sent, RTCP muxed, from
// the RTP socket to the address ICE selected; nothing arriving on the
// RTCP port is accepted (WebRTC muxes, RFC 8829 §4.1.3).
//
// A Secure replaced or removed, or set on a closed leg, is told so with
// Detached. Setting the Secure the leg already has changes nothing.
func (l *Leg) SetSecure(s Secure) {
	l.mu.Lock()
	old := l.sec
	switch {
	case l.closed:
		l.mu.Unlock()
		if s != nil {
			s.Detached()
		}
		return
	case old != nil && s != nil && old.s == s:
		l.mu.Unlock()
		return
	case s == nil:
		l.sec = nil
	default:
		l.sec = &secureLeg{s: s}
	}
	l.mu.Unlock()
	l.p.offload(l, false)
	l.p.offload(l.partner.Load(), false)
	if old != nil {
		old.s.Detached()
	}
}

// RestartICE forgets which sources passed an ICE check and where media
// went (an ICE restart, RFC 8445 §9): until the party's checks with its
// new credentials pass, its media is dropped and nothing is sent to it.
// It does nothing on a plain leg.
func (l *Leg) RestartICE() {
	l.mu.Lock()
	if l.sec != nil {
		l.sec.restart()
	}
	l.mu.Unlock()
}

// Selected is where the party of a leg with a Secure receives media: the
// source of its nominating check (nominated true) or, before one, of its
// latest check; invalid before any check or on a plain leg.
func (l *Leg) Selected() (addr netip.AddrPort, nominated bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sec == nil {
		return netip.AddrPort{}, false
	}
	return l.sec.selected, l.sec.nominated
}

// Send sends b from the leg's RTP socket to its party: to the address
// ICE selected on a leg with a Secure, else where its RTP goes. A
// Secure sends its own records (DTLS) with it; it never blocks, and a
// full socket buffer loses b as the network may. It returns
// ErrNoDestination when there is no address yet, ErrClosed on a closed
// leg.
func (l *Leg) Send(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	var dst netip.AddrPort
	if l.sec != nil {
		dst = l.sec.selected
	} else {
		dst = l.flow[rtpFlow].dest(l.sig[rtpFlow])
	}
	if !dst.IsValid() {
		return ErrNoDestination
	}
	var name unix.RawSockaddrInet6
	namelen := toSockaddr(&name, dst, l.v6)
	if namelen == 0 {
		return ErrNoDestination
	}
	var iov unix.Iovec
	iov.Base = &b[0]
	iov.SetLen(len(b))
	var msg [1]mmsghdr
	msg[0].hdr.Name = (*byte)(unsafe.Pointer(&name))
	msg[0].hdr.Namelen = namelen
	msg[0].hdr.Iov = &iov
	msg[0].hdr.SetIovlen(1)
	if _, errno := sendmmsg(int(l.fd[rtpFlow]), msg[:]); errno != 0 {
		return fmt.Errorf("plane: send to %v: %w", dst, errno)
	}
	return nil
}

// slot is a leg's place in its reader's table; epoll events name it by
// index and generation, never by fd, so an event that was pending for a
// closed leg cannot reach a new one whose socket reuses the fd number.
type slot struct {
	leg *Leg
	fd  [2]int32
	gen uint32
}

// reader is one goroutine's epoll set and the legs registered in it.
type reader struct {
	p    *Plane
	epfd int
	c    counters

	// mu is held while the reader handles the events of one epoll_wait,
	// and by whoever changes its slots: a leg's sockets are closed only
	// between two batches.
	mu     sync.Mutex
	slots  []slot
	free   []int32
	closed bool

	events []unix.EpollEvent

	// The receive batch: message i reads into bufs[i] and names[i].
	rmsg  [batch]mmsghdr
	riov  [batch]unix.Iovec
	names [batch]unix.RawSockaddrInet6
	bufs  [batch][maxPacket]byte
	// verdict[i] is what became of datagram i: accepted as RTP or RTCP
	// of the leg's party, or a drop reason.
	verdict [batch]int8

	// The send batches, one per socket of the partner (RTP, RTCP).
	smsg   [2][batch]mmsghdr
	siov   [2][batch]unix.Iovec
	snames [2][batch]unix.RawSockaddrInet6

	// A Secure's answer to a STUN message, sent at once.
	reply     [maxPacket]byte
	replyMsg  [1]mmsghdr
	replyIov  unix.Iovec
	replyName unix.RawSockaddrInet6
}

// Verdicts of a received datagram beside the drop reasons (>= 0).
const (
	acceptRTP  = -1
	acceptRTCP = -2
	consumed   = -3 // STUN or DTLS, handled by the leg's Secure
)

// forwarding reports whether a verdict sends the datagram on.
func forwarding(v int8) bool { return v == acceptRTP || v == acceptRTCP }

func newReader(p *Plane) (*reader, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("plane: epoll: %w", err)
	}
	r := &reader{p: p, epfd: epfd, events: make([]unix.EpollEvent, maxEvents)}
	r.replyMsg[0].hdr.Iov = &r.replyIov
	r.replyMsg[0].hdr.SetIovlen(1)
	r.replyMsg[0].hdr.Name = (*byte)(unsafe.Pointer(&r.replyName))
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, p.wakeFD, &ev); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("plane: epoll: %w", err)
	}
	for i := range r.rmsg {
		r.riov[i].Base = &r.bufs[i][0]
		r.riov[i].SetLen(maxPacket)
		r.rmsg[i].hdr.Iov = &r.riov[i]
		r.rmsg[i].hdr.SetIovlen(1)
		r.rmsg[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		for o := range r.smsg {
			r.smsg[o][i].hdr.Iov = &r.siov[o][i]
			r.smsg[o][i].hdr.SetIovlen(1)
			r.smsg[o][i].hdr.Name = (*byte)(unsafe.Pointer(&r.snames[o][i]))
		}
	}
	return r, nil
}

// add registers l's sockets in r's epoll set.
func (r *reader) add(l *Leg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	var i int32
	if n := len(r.free); n > 0 {
		i = r.free[n-1]
		r.free = r.free[:n-1]
	} else {
		i = int32(len(r.slots))
		r.slots = append(r.slots, slot{})
	}
	s := &r.slots[i]
	s.gen++
	for k, fd := range l.fd {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: i, Pad: int32(s.gen<<1) | int32(k)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			if k == 1 {
				unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, int(l.fd[0]), nil)
			}
			r.free = append(r.free, i)
			return fmt.Errorf("plane: epoll: %w", err)
		}
	}
	s.leg, s.fd = l, l.fd
	l.r, l.slot = r, i
	return nil
}

// remove deregisters and closes l's sockets, between two batches.
func (r *reader) remove(l *Leg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.slots[l.slot]
	if s.leg != l { // the plane closed it
		return
	}
	for _, fd := range s.fd {
		unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		unix.Close(int(fd))
	}
	s.leg = nil
	s.gen++ // events still pending from this batch's epoll_wait are stale
	r.free = append(r.free, l.slot)
}

// run is the reader's loop; it returns when the plane wakes it to close.
func (r *reader) run() {
	defer r.p.wg.Done()
	for {
		n, err := unix.EpollWait(r.epfd, r.events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			r.p.log.Error("media plane reader stopped", "err", err)
			return
		}
		r.mu.Lock()
		mono, wall := r.p.clock()
		for _, ev := range r.events[:n] {
			if ev.Fd == wakeSlot {
				r.mu.Unlock()
				return
			}
			s := &r.slots[ev.Fd]
			if s.leg == nil || s.gen != uint32(ev.Pad)>>1 {
				continue
			}
			kind := int(ev.Pad & 1)
			r.handle(s.leg, kind, int(s.fd[kind]), mono, wall)
		}
		r.mu.Unlock()
	}
}

// handle reads one batch from l's socket of the given flow kind and
// forwards what came from l's party out of the partner's sockets.
func (r *reader) handle(l *Leg, kind, fd int, mono, wall int64) {
	for i := range r.rmsg {
		r.rmsg[i].hdr.Namelen = sockaddrLen
		r.rmsg[i].hdr.Flags = 0
	}
	n, errno := recvmmsg(fd, r.rmsg[:])
	if errno != 0 || n <= 0 {
		return
	}
	r.c.reads.Add(1)
	var drops [numDrops]uint64
	accepted, rtcpSeen, latched := 0, false, false

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	for i := range n {
		m := &r.rmsg[i]
		if m.hdr.Flags&unix.MSG_TRUNC != 0 {
			r.verdict[i] = dropTooBig
			drops[dropTooBig]++
			continue
		}
		src, ok := fromSockaddr(&r.names[i], m.hdr.Namelen)
		if !ok {
			r.verdict[i] = dropStranger
			drops[dropStranger]++
			continue
		}
		if l.sec != nil {
			v := r.secure(l, kind, i, src)
			r.verdict[i] = v
			switch {
			case v >= 0:
				drops[v]++
			case v == acceptRTCP:
				rtcpSeen = true
				accepted++
			case v == acceptRTP:
				accepted++
			}
			continue
		}
		ok, moved := l.flow[kind].accept(src, l.sig[kind], l.flow[1-kind].src.Addr(), mono, r.p.window)
		if !ok {
			r.verdict[i] = dropStranger
			drops[dropStranger]++
			continue
		}
		if moved {
			latched = latched || kind == rtpFlow
			if r.p.log.Enabled(context.Background(), slog.LevelDebug) {
				r.p.log.Debug("media leg latched", "leg", l.local, "rtcp_port", kind == rtcpFlow, "source", src, "signalled", l.sig[kind])
			}
		}
		accepted++
		if kind == rtcpFlow || isRTCP(r.bufs[i][:m.n]) {
			r.verdict[i] = acceptRTCP
			rtcpSeen = true
		} else {
			r.verdict[i] = acceptRTP
		}
	}
	l.mu.Unlock()
	partner := l.partner.Load()
	if latched {
		// The party's RTP source is known or moved: the kernel path
		// takes its flow from here on, and the flow back to it goes to
		// the new source, before the party's packet is forwarded (and
		// answered).
		r.p.offload(l, false)
		r.p.offload(partner, false)
	}

	// Reports of the party about what it receives: rare, and parsing
	// allocates, so only RTCP gets here. Before forwarding, which may
	// encrypt the packets in place.
	if rtcpSeen {
		for i := range n {
			if r.verdict[i] != acceptRTCP {
				continue
			}
			if rep, ok := parseReport(r.bufs[i][:r.rmsg[i].n]); ok {
				l.mu.Lock()
				l.rep, l.hasRep = rep, true
				l.mu.Unlock()
			}
		}
	}

	var sent, sentBytes uint64
	if accepted > 0 {
		l.last.Store(wall)
		sent, sentBytes = r.forward(partner, n, &drops)
	}

	l.packets.Add(sent)
	l.bytes.Add(sentBytes)
	r.c.packets.Add(sent)
	r.c.bytes.Add(sentBytes)
	var dropped uint64
	for i, d := range drops {
		if d != 0 {
			dropped += d
			r.c.drops[i].Add(d)
		}
	}
	if dropped != 0 {
		l.dropped.Add(dropped)
	}
}

// secure decides datagram i of the batch, from src on l's socket of the
// given kind, for a leg with a Secure; the caller holds l.mu. STUN is
// answered at once; SRTP and SRTCP are decrypted in place (the
// datagram's length shrinks to the plain packet's).
func (r *reader) secure(l *Leg, kind, i int, src netip.AddrPort) int8 {
	sl := l.sec
	b := r.bufs[i][:r.rmsg[i].n]
	if kind == rtcpFlow {
		return dropUnknown
	}
	switch demux(b) {
	case pktSTUN:
		n, res := sl.s.STUN(b, src, sl.validated(src), r.reply[:])
		if n > 0 && n <= len(r.reply) {
			r.answer(l, src, n)
		}
		switch res {
		case STUNValid, STUNNominated:
			if sl.checked(src, res == STUNNominated) && r.p.log.Enabled(context.Background(), slog.LevelDebug) {
				r.p.log.Debug("media leg selected ICE address", "leg", l.local, "address", src, "nominated", sl.nominated)
			}
			return consumed
		case STUNRefused:
			return dropSTUNRefused
		case STUNRateLimited:
			return dropSTUNRateLimited
		}
		return consumed
	case pktDTLS:
		if !sl.validated(src) {
			return dropStranger
		}
		if !sl.s.DTLS(b, src) {
			return dropQueueFull
		}
		return consumed
	case pktSRTP:
		if !sl.validated(src) {
			return dropStranger
		}
		rtcp := isRTCP(b)
		n, err := sl.s.Unprotect(b, rtcp)
		if err != nil {
			return secureVerdict(err)
		}
		if n < 0 || n > len(b) {
			return dropSRTPFailed
		}
		r.rmsg[i].n = uint32(n)
		if rtcp {
			return acceptRTCP
		}
		return acceptRTP
	}
	return dropUnknown
}

// answer sends the Secure's answer in r.reply[:n] from l's RTP socket
// to src; the caller holds l.mu. A lost answer is as if the network had
// lost it: the party retransmits its check.
func (r *reader) answer(l *Leg, src netip.AddrPort, n int) {
	namelen := toSockaddr(&r.replyName, src, l.v6)
	if namelen == 0 {
		return
	}
	r.replyMsg[0].hdr.Namelen = namelen
	r.replyIov.Base = &r.reply[0]
	r.replyIov.SetLen(n)
	sendmmsg(int(l.fd[rtpFlow]), r.replyMsg[:])
}

// forward sends the accepted datagrams of the batch out of b's sockets to
// b's party, counting drops; it returns what went out.
func (r *reader) forward(b *Leg, n int, drops *[numDrops]uint64) (sent, bytes uint64) {
	accepted := func(reason int) {
		for i := range n {
			if forwarding(r.verdict[i]) {
				drops[reason]++
			}
		}
	}
	if b == nil {
		accepted(dropNoPartner)
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		accepted(dropNoPartner)
		return 0, 0
	}
	// RTCP to a party that muxes goes to its RTP address, from the RTP
	// socket (RFC 5761 §5.1.3); a secure leg's party always muxes and
	// gets both at the address ICE selected.
	var dst [2]netip.AddrPort
	out := [2]int{rtpFlow, rtcpFlow}
	sec := b.sec
	switch {
	case sec != nil:
		dst[rtpFlow] = sec.selected
		dst[rtcpFlow], out[rtcpFlow] = dst[rtpFlow], rtpFlow
	case b.mux:
		dst[rtpFlow] = b.flow[rtpFlow].dest(b.sig[rtpFlow])
		dst[rtcpFlow], out[rtcpFlow] = dst[rtpFlow], rtpFlow
	default:
		dst[rtpFlow] = b.flow[rtpFlow].dest(b.sig[rtpFlow])
		dst[rtcpFlow] = b.flow[rtcpFlow].dest(b.sig[rtcpFlow])
	}
	var cnt [2]int
	for i := range n {
		k := rtpFlow
		switch r.verdict[i] {
		case acceptRTP:
		case acceptRTCP:
			k = rtcpFlow
		default:
			continue
		}
		if !dst[k].IsValid() {
			drops[dropNoDest]++
			continue
		}
		o := out[k]
		j := cnt[o]
		namelen := toSockaddr(&r.snames[o][j], dst[k], b.v6)
		if namelen == 0 {
			drops[dropNoDest]++
			continue
		}
		size := int(r.rmsg[i].n)
		if sec != nil {
			pkt := r.bufs[i][:size]
			if demux(pkt) != pktSRTP {
				// Whatever it is, it must not reach the party's STUN
				// or DTLS stack.
				drops[dropUnknown]++
				continue
			}
			var err error
			if size, err = sec.s.Protect(pkt, k == rtcpFlow); err != nil {
				drops[secureVerdict(err)]++
				continue
			}
			if size <= 0 || size > maxPacket {
				drops[dropSRTPFailed]++
				continue
			}
		}
		m := &r.smsg[o][j]
		m.hdr.Namelen = namelen
		r.siov[o][j].Base = &r.bufs[i][0]
		r.siov[o][j].SetLen(size)
		cnt[o]++
	}
	for o := range cnt {
		msgs := r.smsg[o][:cnt[o]]
		for len(msgs) > 0 {
			k, errno := sendmmsg(int(b.fd[o]), msgs)
			if errno != 0 {
				// The first message failed (a full send buffer, an
				// unreachable network): drop it, go on with the rest.
				drops[dropSendError]++
				k = 0
				msgs = msgs[1:]
			}
			for _, m := range msgs[:k] {
				sent++
				bytes += uint64(m.n)
			}
			msgs = msgs[k:]
		}
	}
	return sent, bytes
}
