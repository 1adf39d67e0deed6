package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// NAT decides how the server reaches user agents behind NATs: whether a
// request for a binding goes over the flow its REGISTER came on or to its
// Contact, and the keep-alive pings that hold NAT bindings open and find
// UAs that are gone (docs/nat.md). The YAML file's "nat" section maps onto
// it; zero fields take the defaults named.
type NAT struct {
	// Contact is the rule that picks the flow or the Contact:
	//   auto     the flow under SIP Outbound, over a stream, or when the
	//            REGISTER showed a NAT (registrar.Binding.NAT: its top Via
	//            named another address than the source, or its Contact a
	//            private or link-local one); the Contact otherwise, so a UA
	//            that listens on another port than it sends from, or a
	//            third-party registration, is reached where it says
	//   flow     the flow for every binding (Kamailio's fix_nated_register
	//            on everything), for NATs that keep the address and map the
	//            port
	//   contact  the Contact, except under SIP Outbound (RFC 5626 §5.3)
	// Default auto.
	Contact string `yaml:"contact"`
	// KeepAlive pings the UDP bindings reached over their flow (not SIP
	// Outbound ones, whose UA sends STUN keep-alives itself, RFC 5626
	// §4.4.2, nor those with a Path, whose edge proxy keeps them) with
	// OPTIONS, and removes a binding whose pings go unanswered. Default
	// true.
	KeepAlive *bool `yaml:"keepalive"`
	// KeepAliveInterval is how often each of those bindings is pinged; the
	// pings are spread over it. Default 30s (Kamailio's usual
	// natping_interval), at least 1s.
	KeepAliveInterval time.Duration `yaml:"keepalive_interval"`
	// KeepAliveFailures is how many pings in a row may go unanswered —
	// no response at all within the transaction timeout, 64×T1 — before
	// the binding is removed. Any response, even 404 or 405, is an answer.
	// Default 3.
	KeepAliveFailures int `yaml:"keepalive_failures"`
}

// Defaults of NAT.
const (
	DefaultNATKeepAliveInterval = 30 * time.Second
	DefaultNATKeepAliveFailures = 3
)

// The nat.contact rules.
const (
	natAuto    = "auto"
	natFlow    = "flow"
	natContact = "contact"
)

func (n NAT) mode() string {
	if n.Contact == "" {
		return natAuto
	}
	return n.Contact
}

func (n NAT) keepAlive() bool { return n.KeepAlive == nil || *n.KeepAlive }

func (n NAT) interval() time.Duration {
	if n.KeepAliveInterval == 0 {
		return DefaultNATKeepAliveInterval
	}
	return n.KeepAliveInterval
}

func (n NAT) failures() int {
	if n.KeepAliveFailures == 0 {
		return DefaultNATKeepAliveFailures
	}
	return n.KeepAliveFailures
}

func (n NAT) validate() error {
	switch n.Contact {
	case "", natAuto, natFlow, natContact:
	default:
		return fmt.Errorf("config nat.contact %q: want auto, flow or contact", n.Contact)
	}
	if n.KeepAliveInterval != 0 && n.KeepAliveInterval < time.Second {
		return fmt.Errorf("config nat.keepalive_interval %s: want at least 1s", n.KeepAliveInterval)
	}
	if n.KeepAliveFailures < 0 {
		return fmt.Errorf("config nat.keepalive_failures %d: must not be negative", n.KeepAliveFailures)
	}
	return nil
}

// useFlow reports whether requests for b go over the flow its REGISTER
// came on rather than to its Contact: the nat.contact rule. A binding
// without a recorded source has only its Contact.
func (n NAT) useFlow(b *registrar.Binding) bool {
	if !b.Source.IsValid() {
		return false
	}
	if b.Outbound() {
		return true // RFC 5626 §5.3, whatever the rule
	}
	switch n.mode() {
	case natFlow:
		return true
	case natContact:
		return false
	}
	return b.Transport != transport.UDP || b.NAT
}

// pinged reports whether the keep-alive pinger looks after b: a UDP
// binding reached over its flow, made directly (no Path) and not under
// SIP Outbound, with the addresses to ping from and to.
func (n NAT) pinged(b *registrar.Binding) bool {
	return b.Transport == transport.UDP && !b.Outbound() && b.Path == "" && b.Local.IsValid() && n.useFlow(b)
}

// maxPingsInFlight bounds the keep-alive OPTIONS transactions alive at
// once (an unanswered one lives 64×T1, 32 s, resending); bindings beyond
// it wait for the next turn.
const maxPingsInFlight = 32768

// natKeeper pings the bindings NAT.pinged selects (OPTIONS, RFC 3261 §11,
// as Kamailio's nathelper sipping does) from one goroutine: each tick
// walks a few slots of the registrar's expiry wheel (registrar.Sweep), so
// that each binding is pinged about once an interval and the work of a
// tick is bounded. A ping is a client transaction of the server's
// transaction layer, sent from the socket the REGISTER arrived on to its
// source: the layer resends it over UDP (a lost datagram is not a
// failure), matches the response however it comes back (the response
// reaches Layer.HandleResponse like any other), and times it out at
// 64×T1. KeepAliveFailures timeouts in a row, with no REGISTER refreshing
// the binding meanwhile, remove it through the registrar, which writes the
// removal to the store as an unregistration.
type natKeeper struct {
	s        *Server
	log      *slog.Logger
	failures int
	every    time.Duration // tick
	slots    int           // wheel slots swept per tick
	natOnly  bool          // only bindings flagged NAT can be pinged (auto)

	sent, failed, removed prometheus.Counter

	// Only the goroutine that runs tick uses these.
	cursor int
	turn   uint64
	buf    []registrar.Binding
	srcIP  map[netip.Addr]netip.Addr // route source for a wildcard listener, by destination

	mu       sync.Mutex
	state    map[bindingKey]*pingState // bindings with a ping in flight or failures
	inFlight int
	dead     []deadBinding // failed KeepAliveFailures times: removed by the next tick

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// bindingKey names a binding.
type bindingKey struct{ aor, id string }

// deadBinding is a binding whose pings failed, and the refresh they
// failed after.
type deadBinding struct {
	bindingKey
	updated time.Time
}

type pingState struct {
	updated  time.Time // the binding's Updated when its failures began
	failures int
	inFlight bool
	turn     uint64 // the sweep turn of the last ping
}

// newNATKeeper builds the pinger of s (nil when keep-alives are off) and
// registers its metrics.
func newNATKeeper(s *Server, log *slog.Logger) *natKeeper {
	n := s.cfg.NAT
	if !n.keepAlive() || n.mode() == natContact {
		return nil
	}
	k := &natKeeper{
		s: s, log: log.With("feature", "nat"), failures: n.failures(), natOnly: n.mode() == natAuto,
		state: map[bindingKey]*pingState{}, srcIP: map[netip.Addr]netip.Addr{}, stop: make(chan struct{}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "nat", Name: "keepalive_sent_total",
			Help: "Keep-alive OPTIONS sent to bindings behind NATs (not counting retransmissions).",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "nat", Name: "keepalive_failed_total",
			Help: "Keep-alive OPTIONS that got no response within the transaction timeout.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "nat", Name: "keepalive_bindings_removed_total",
			Help: "Bindings removed because their keep-alives went unanswered.",
		}),
	}
	interval := n.interval()
	k.every = min(time.Second, interval)
	k.slots = int((int64(registrar.SweepSlots)*int64(k.every) + int64(interval) - 1) / int64(interval))
	s.reg.MustRegister(k.sent, k.failed, k.removed, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hlas", Subsystem: "nat", Name: "keepalive_in_flight",
		Help: "Keep-alive OPTIONS waiting for a response.",
	}, func() float64 { k.mu.Lock(); defer k.mu.Unlock(); return float64(k.inFlight) }))
	return k
}

// start runs the pinger until close.
func (k *natKeeper) start() {
	if k == nil {
		return
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := time.NewTicker(k.every)
		defer t.Stop()
		for {
			select {
			case <-k.stop:
				return
			case <-t.C:
				k.tick()
			}
		}
	}()
}

// close stops the pinger and waits for it. Pings in flight end in the
// transaction layer; their outcome no longer matters.
func (k *natKeeper) close() {
	if k == nil {
		return
	}
	k.once.Do(func() { close(k.stop) })
	k.wg.Wait()
}

// tick removes the bindings that failed and pings those of the next
// slots of the wheel.
func (k *natKeeper) tick() {
	k.removeDead()
	k.buf, k.cursor = k.s.registrar.Sweep(k.buf[:0], k.cursor, k.slots, k.natOnly)
	nat := k.s.cfg.NAT
	for i := range k.buf {
		if b := &k.buf[i]; nat.pinged(b) {
			k.ping(b)
		}
	}
	clear(k.buf) // the next tick may be long in coming
	if k.cursor < k.slots {
		k.newTurn()
	}
}

// newTurn forgets the state of bindings not pinged during the last whole
// turn: gone, refreshed elsewhere, or no longer behind a NAT.
func (k *natKeeper) newTurn() {
	k.turn++
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, st := range k.state {
		if !st.inFlight && st.turn+1 < k.turn {
			delete(k.state, key)
		}
	}
}

// removeDead removes the bindings whose pings failed; one the store's
// write queue cannot take now waits for the next tick.
func (k *natKeeper) removeDead() {
	k.mu.Lock()
	dead := k.dead
	k.dead = nil
	k.mu.Unlock()
	for i, d := range dead {
		ok, err := k.s.registrar.Remove(d.aor, d.id, d.updated, "no answer to "+strconv.Itoa(k.failures)+" keep-alive OPTIONS")
		if errors.Is(err, registrar.ErrBusy) {
			k.mu.Lock()
			k.dead = append(k.dead, dead[i:]...)
			k.mu.Unlock()
			return
		}
		if ok {
			k.removed.Inc()
		}
	}
}

// ping sends one OPTIONS to b unless one is in flight.
func (k *natKeeper) ping(b *registrar.Binding) {
	key := bindingKey{aor: b.AOR, id: b.ID}
	k.mu.Lock()
	st := k.state[key]
	switch {
	case st != nil && st.inFlight, k.inFlight >= maxPingsInFlight:
		k.mu.Unlock()
		return
	case st == nil:
		st = &pingState{}
		k.state[key] = st
	}
	if !st.updated.Equal(b.Updated) {
		// Refreshed since the failures began: the NAT binding is alive.
		st.updated, st.failures = b.Updated, 0
	}
	st.inFlight, st.turn = true, k.turn
	k.inFlight++
	k.mu.Unlock()

	local, remote := b.Local, b.Source
	req := k.options(b, local, remote)
	p := &pendingPing{k: k, key: key}
	k.sent.Inc()
	// A transport error comes back through the handler, as a failure; a
	// request the layer refused outright (no transaction) does not.
	if tx, err := k.s.txl.Request(req, pingSender{k: k, local: local, remote: remote}, p.response); tx == nil && err != nil {
		p.response(nil, err)
	}
}

// pendingPing is one keep-alive OPTIONS waiting for its outcome.
type pendingPing struct {
	k    *natKeeper
	key  bindingKey
	done bool // under k.mu
}

// response is the transaction's handler: the first response of any kind
// proves the UA there; a timeout or transport error is a failure.
func (p *pendingPing) response(res *sip.Response, err error) {
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	k.inFlight--
	st := k.state[p.key]
	if st == nil {
		return
	}
	st.inFlight = false
	if res != nil {
		delete(k.state, p.key)
		return
	}
	k.failed.Inc()
	st.failures++
	k.log.Debug("keep-alive unanswered", "aor", p.key.aor, "failures", st.failures, "err", err)
	if st.failures >= k.failures {
		delete(k.state, p.key)
		k.dead = append(k.dead, deadBinding{p.key, st.updated})
	}
}

// options builds the keep-alive: an OPTIONS to the Contact, which the UA
// answers like any other (RFC 3261 §11.2), with rport so that the answer
// comes back to our socket whatever the UA thinks of its NAT.
func (k *natKeeper) options(b *registrar.Binding, local, remote netip.AddrPort) *sip.Request {
	host := hostString(k.viaIP(local, remote))
	ruri := b.Contact.URI
	ruri.Headers = ""
	domain := host
	if len(k.s.cfg.Domains) > 0 {
		domain = k.s.cfg.Domains[0]
	}
	req := &sip.Request{Method: sip.OPTIONS, URI: ruri, Version: "SIP/2.0"}
	req.Via = []sip.Via{{Proto: "SIP/2.0", Transport: transport.UDP, Host: host, Port: int(local.Port()),
		Params: sip.Params(";branch=" + sip.NewBranchID() + ";rport")}}
	req.MaxForwards = 70
	req.From = sip.Address{URI: sip.URI{Scheme: sip.SchemeSIP, User: "keepalive", Host: domain},
		Params: sip.Params(";tag=" + sip.NewTag())}
	req.To = sip.Address{URI: ruri}
	req.CallID = sip.NewTag() + "@" + host
	req.CSeq = sip.CSeq{Seq: 1, Method: sip.OPTIONS}
	req.Add("User-Agent", k.s.cfg.ServerName)
	return req
}

// viaIP is the address to write in the Via: the listener's, or for a
// wildcard listener the one the kernel routes from towards remote (a
// connected UDP socket sends nothing), remembered per destination.
func (k *natKeeper) viaIP(local, remote netip.AddrPort) netip.Addr {
	if a := local.Addr(); a.IsValid() && !a.IsUnspecified() {
		return a.Unmap()
	}
	dst := remote.Addr().Unmap()
	if ip, ok := k.srcIP[dst]; ok {
		return ip
	}
	ip := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if dst.Is6() {
		ip = netip.IPv6Loopback()
	}
	if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9))); err == nil {
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
			ip = a.AddrPort().Addr().Unmap()
		}
		c.Close()
	}
	if len(k.srcIP) >= 256 {
		clear(k.srcIP)
	}
	k.srcIP[dst] = ip
	return ip
}

func hostString(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// pingSender sends a keep-alive and its retransmissions from the socket
// the binding's REGISTER arrived on.
type pingSender struct {
	k             *natKeeper
	local, remote netip.AddrPort
}

func (ps pingSender) Send(m sip.Message) error {
	return ps.k.s.writeTo(transport.UDP, ps.local, ps.remote, m.AppendTo(nil))
}

func (pingSender) Reliable() bool { return false }
