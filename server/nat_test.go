package server

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// TestNATContactRule: which bindings the nat.contact rule sends over their
// flow, in each mode, and which of those the pinger looks after.
func TestNATContactRule(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	local := netip.MustParseAddrPort("192.0.2.10:5060")
	udp := func(mod func(*registrar.Binding)) registrar.Binding {
		b := registrar.Binding{Source: src, Local: local, Transport: "UDP"}
		b.Contact.URI = sip.URI{Scheme: "sip", User: "a", Host: "198.51.100.7", Port: 40000}
		if mod != nil {
			mod(&b)
		}
		return b
	}
	type want struct{ flow, pinged bool }
	tests := []struct {
		name                string
		b                   registrar.Binding
		auto, flow, contact want
	}{
		{"a public UA at its source", udp(nil),
			want{}, want{true, true}, want{}},
		{"sipsak: the source address, another port (no NAT shown)", udp(func(b *registrar.Binding) { b.Contact.URI.Port = 42243 }),
			want{}, want{true, true}, want{}},
		{"a third-party registration", udp(func(b *registrar.Binding) { b.Contact.URI.Host = "203.0.113.9" }),
			want{}, want{true, true}, want{}},
		{"the REGISTER showed a NAT", udp(func(b *registrar.Binding) { b.NAT = true }),
			want{true, true}, want{true, true}, want{}},
		{"RFC 5626 Outbound over UDP: the UA keeps its flow", udp(func(b *registrar.Binding) { b.Instance, b.RegID = `"<urn:uuid:1>"`, 1 }),
			want{true, false}, want{true, false}, want{true, false}},
		{"over a stream", udp(func(b *registrar.Binding) { b.Transport = "TCP" }),
			want{true, false}, want{true, false}, want{}},
		{"behind a NAT and an edge proxy's Path", udp(func(b *registrar.Binding) { b.NAT, b.Path = true, "<sip:edge.test;lr>" }),
			want{true, false}, want{true, false}, want{}},
		{"no recorded source (an old row)", udp(func(b *registrar.Binding) { b.NAT, b.Source = true, netip.AddrPort{} }),
			want{}, want{}, want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range []struct {
				mode string
				want want
			}{{"", tt.auto}, {"auto", tt.auto}, {"flow", tt.flow}, {"contact", tt.contact}} {
				n := NAT{Contact: m.mode}
				if got := n.useFlow(&tt.b); got != m.want.flow {
					t.Errorf("nat.contact %q: useFlow %v, want %v", m.mode, got, m.want.flow)
				}
				if got := n.pinged(&tt.b); got != m.want.pinged {
					t.Errorf("nat.contact %q: pinged %v, want %v", m.mode, got, m.want.pinged)
				}
			}
		})
	}
}

func TestNATConfig(t *testing.T) {
	for _, tt := range []struct {
		nat  NAT
		want string // error text; "" for none
	}{
		{NAT{}, ""},
		{NAT{Contact: "flow", KeepAliveInterval: time.Second, KeepAliveFailures: 1}, ""},
		{NAT{Contact: "Auto"}, "nat.contact"},
		{NAT{Contact: "nat"}, "nat.contact"},
		{NAT{KeepAliveInterval: 500 * time.Millisecond}, "nat.keepalive_interval"},
		{NAT{KeepAliveInterval: -time.Second}, "nat.keepalive_interval"},
		{NAT{KeepAliveFailures: -1}, "nat.keepalive_failures"},
	} {
		err := Config{NAT: tt.nat}.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want an error naming %q", tt.nat, err, tt.want)
		}
	}
	if n := (NAT{}); n.mode() != "auto" || !n.keepAlive() || n.interval() != 30*time.Second || n.failures() != 3 {
		t.Errorf("defaults: %s %v %s %d", n.mode(), n.keepAlive(), n.interval(), n.failures())
	}
}

// natServer is a memServer for example.test (open: no digest) whose
// transaction layer runs on a fake clock, recording the local address of
// what it sends as well.
type natServer struct {
	*memServer
	txClock *transaction.FakeClock

	mu   sync.Mutex
	from map[netip.AddrPort]netip.AddrPort // destination -> local address of the last message
}

func newNATServer(t *testing.T, nat NAT) *natServer {
	t.Helper()
	m := newMemServer(t, Config{Domains: []string{"example.test"}, Auth: auth.Config{OpenDomains: []string{"example.test"}},
		MaxQueueDelay: time.Hour, NAT: nat})
	ns := &natServer{memServer: m, txClock: transaction.NewFakeClock(time.Unix(1_800_000_000, 0)),
		from: map[netip.AddrPort]netip.AddrPort{}}
	m.txl = transaction.New(transaction.Config{Clock: ns.txClock})
	m.writeTo = func(proto string, local, dst netip.AddrPort, b []byte) error {
		ns.mu.Lock()
		ns.from[dst] = local
		ns.mu.Unlock()
		return m.record(proto, local, dst, b)
	}
	return ns
}

// register sends a REGISTER for user from src, with the given top Via
// sent-by and Contact, and wants its 200.
func (ns *natServer) register(t *testing.T, user string, src netip.AddrPort, via, contact string, cseq int) {
	t.Helper()
	msg := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s@example.test>;tag=f\r\nTo: <sip:%s@example.test>\r\nCall-ID: reg-%s\r\n"+
		"CSeq: %d REGISTER\r\nContact: %s;expires=600\r\nContent-Length: 0\r\n\r\n", via, user, cseq, user, user, user, cseq, contact)
	ns.receive([]byte(msg), src, ns.now())
	if res := ns.next(t, src); res.StatusCode != 200 {
		t.Fatalf("REGISTER %s: %d %s", user, res.StatusCode, res.Get("Warning"))
	}
}

// drain empties dst's box.
func (ns *natServer) drain(dst netip.AddrPort) {
	for {
		select {
		case <-ns.box(dst):
		default:
			return
		}
	}
}

// options returns the OPTIONS waiting in dst's box, nil when none.
func (ns *natServer) options(t *testing.T, dst netip.AddrPort) *sip.Request {
	t.Helper()
	select {
	case b := <-ns.box(dst):
		msg, err := sip.Parse(b)
		if err != nil {
			t.Fatalf("sent message does not parse: %v\n%s", err, b)
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.OPTIONS {
			t.Fatalf("sent to %s, not an OPTIONS:\n%s", dst, b)
		}
		return req
	default:
		return nil
	}
}

// sweep runs the pinger over the whole wheel at once.
func (ns *natServer) sweep() {
	ns.nat.slots = registrar.SweepSlots
	ns.nat.tick()
}

// TestLocatorNATRule: the location service reaches a UA that sends from
// one port and listens on another at its Contact (sipsak, which today's
// rule took for a NAT), and a UA whose REGISTER showed a NAT over its flow.
func TestLocatorNATRule(t *testing.T) {
	ns := newNATServer(t, NAT{})
	sipsak := netip.MustParseAddrPort("127.0.0.1:58110")
	ns.register(t, "sipsak", sipsak, "127.0.0.1:42243", "<sip:sipsak@127.0.0.1:42243>", 1)
	natted := netip.MustParseAddrPort("198.51.100.7:40000")
	ns.register(t, "natted", natted, "10.0.0.5:5060", "<sip:natted@10.0.0.5:5060>", 1)
	third := netip.MustParseAddrPort("198.51.100.9:5060")
	ns.register(t, "third", third, "198.51.100.9:5060", "<sip:third@203.0.113.9:5060>", 1)

	for _, tt := range []struct {
		user string
		flow netip.AddrPort // zero: the Contact
	}{{"sipsak", netip.AddrPort{}}, {"natted", natted}, {"third", netip.AddrPort{}}} {
		ts, err := locator{ns.Server}.Lookup(context.Background(), sip.URI{Scheme: "sip", User: tt.user, Host: "example.test"})
		if err != nil || len(ts) != 1 {
			t.Fatalf("%s: %v, %v", tt.user, ts, err)
		}
		if ts[0].Flow.Remote != tt.flow {
			t.Errorf("%s: flow to %v, want %v (Contact %s)", tt.user, ts[0].Flow.Remote, tt.flow, ts[0].URI.String())
		}
	}
}

// TestKeepAlive: the pinger sends OPTIONS to a NATed binding from the
// socket its REGISTER came to, keeps one that answers (even 405), and
// removes one whose pings time out KeepAliveFailures times in a row —
// from the store too. A binding not behind a NAT is not pinged.
func TestKeepAlive(t *testing.T) {
	ns := newNATServer(t, NAT{KeepAliveFailures: 2})
	alice := netip.MustParseAddrPort("198.51.100.7:40000") // gone
	bob := netip.MustParseAddrPort("198.51.100.8:40000")   // answers
	carol := netip.MustParseAddrPort("198.51.100.9:5060")  // public
	ns.register(t, "alice", alice, "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>", 1)
	ns.register(t, "bob", bob, "10.0.0.6:5060", "<sip:bob@10.0.0.6:5060;transport=udp>", 1)
	ns.register(t, "carol", carol, "198.51.100.9:5060", "<sip:carol@198.51.100.9:5060>", 1)
	timeout := 64 * ns.txl.Config().T1

	for round := 1; round <= 2; round++ {
		ns.sweep()
		a, b := ns.options(t, alice), ns.options(t, bob)
		if a == nil || b == nil {
			t.Fatalf("round %d: OPTIONS to alice %v, to bob %v", round, a != nil, b != nil)
		}
		if c := ns.options(t, carol); c != nil {
			t.Fatalf("round %d: a binding not behind a NAT was pinged:\n%s", round, c)
		}
		if got := b.URI.String(); got != "sip:bob@10.0.0.6:5060;transport=udp" {
			t.Errorf("Request-URI %s, want the Contact", got)
		}
		if rp, ok := b.Via[0].RPort(); !ok || rp != 0 || b.Via[0].SentBy() != ns.local.String() {
			t.Errorf("Via %s, want sent-by %s and rport", b.Via[0].String(), ns.local)
		}
		ns.mu.Lock()
		from := ns.from[bob]
		ns.mu.Unlock()
		if from != ns.local {
			t.Errorf("sent from %v, want the REGISTER's socket %v", from, ns.local)
		}
		// Bob answers: not even a 200 is needed.
		ns.receive([]byte(sip.NewResponse(b, 405, "").String()), bob, ns.now())
		ns.txClock.Advance(timeout)
		ns.drain(alice) // the retransmissions
		ns.drain(bob)
		if round == 1 && len(ns.registrar.Lookup("alice@example.test")) != 1 {
			t.Fatal("alice removed after one failure")
		}
	}
	ns.sweep() // removes alice; pings bob again
	if got := ns.registrar.Lookup("alice@example.test"); len(got) != 0 {
		t.Errorf("alice is still registered after %d unanswered keep-alives: %+v", 2, got)
	}
	if got := len(ns.registrar.Lookup("bob@example.test")); got != 1 {
		t.Errorf("bob has %d bindings, want 1", got)
	}
	if ns.options(t, alice) != nil {
		t.Error("a removed binding was pinged")
	}
	rows, err := ns.store.Bindings(context.Background(), "alice@example.test", time.Now())
	if err != nil || len(rows) != 0 {
		t.Errorf("the store still has alice: %+v, %v", rows, err)
	}
	for _, m := range []struct {
		name string
		c    prometheus.Counter
		want float64
	}{{"sent", ns.nat.sent, 5}, {"failed", ns.nat.failed, 2}, {"removed", ns.nat.removed, 1}} {
		if got := testutil.ToFloat64(m.c); got != m.want {
			t.Errorf("hlas_nat_keepalive %s = %v, want %v", m.name, got, m.want)
		}
	}
}

// TestKeepAliveRefreshed: a REGISTER between failed pings proves the UA
// alive; its failures start again from zero, and a ping in flight is
// not sent twice.
func TestKeepAliveRefreshed(t *testing.T) {
	ns := newNATServer(t, NAT{KeepAliveFailures: 2})
	alice := netip.MustParseAddrPort("198.51.100.7:40000")
	ns.register(t, "alice", alice, "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>", 1)
	timeout := 64 * ns.txl.Config().T1

	ns.sweep()
	if ns.options(t, alice) == nil {
		t.Fatal("no OPTIONS")
	}
	ns.sweep() // the first is still in flight
	if req := ns.options(t, alice); req != nil {
		t.Fatalf("a second ping while the first is in flight:\n%s", req)
	}
	ns.txClock.Advance(timeout) // failure 1
	ns.drain(alice)
	ns.register(t, "alice", alice, "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>", 2)
	ns.sweep()
	ns.txClock.Advance(timeout) // failure 1 again, after the refresh
	ns.drain(alice)
	ns.sweep()
	if len(ns.registrar.Lookup("alice@example.test")) != 1 {
		t.Fatal("removed after one failure since its refresh")
	}
	ns.txClock.Advance(timeout) // failure 2
	ns.drain(alice)
	ns.sweep()
	if got := ns.registrar.Lookup("alice@example.test"); len(got) != 0 {
		t.Errorf("still registered after 2 failures since its refresh: %+v", got)
	}
}

// TestKeepAliveModes: nat.contact flow pings every UDP binding; contact
// and keepalive false ping none.
func TestKeepAliveModes(t *testing.T) {
	off := false
	for _, tt := range []struct {
		nat    NAT
		pinged bool
	}{{NAT{Contact: "flow"}, true}, {NAT{Contact: "contact"}, false}, {NAT{KeepAlive: &off}, false}} {
		ns := newNATServer(t, tt.nat)
		carol := netip.MustParseAddrPort("198.51.100.9:5060")
		ns.register(t, "carol", carol, "198.51.100.9:5060", "<sip:carol@198.51.100.9:5060>", 1)
		if ns.nat == nil {
			if tt.pinged {
				t.Errorf("%+v: no pinger", tt.nat)
			}
			continue
		}
		ns.sweep()
		if got := ns.options(t, carol) != nil; got != tt.pinged {
			t.Errorf("%+v: pinged %v, want %v", tt.nat, got, tt.pinged)
		}
	}
}

// TestKeepAliveSpread: the default interval sweeps the wheel in about
// thirty ticks of a second.
func TestKeepAliveSpread(t *testing.T) {
	ns := newNATServer(t, NAT{})
	if ns.nat.every != time.Second || ns.nat.slots*30 < registrar.SweepSlots || ns.nat.slots*29 >= registrar.SweepSlots {
		t.Errorf("tick %s, %d slots a tick, for %d slots in 30s", ns.nat.every, ns.nat.slots, registrar.SweepSlots)
	}
}
