package proxy

import (
	"bytes"
	"context"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
	"github.com/hlas-voip/hlas/sip/transport"
)

// The stateful proxy's work for one call attempt, without sockets: an
// INVITE from the caller through the chain (route, response context,
// branch, Via and Record-Route, client transaction) to the callee, and
// the callee's 486 back (parsed, matched, ranked, sent upstream, ACKed).
// "static" finds the callee in the configured locations; "dns" through a
// resolve rule and RFC 3263 (NAPTR, SRV, A from the resolver's cache), so
// the difference is what DNS routing adds per call.
//
// What the server does is measured: each datagram copied into a buffer of
// its own (as the transport does) and parsed, the chain, the transactions,
// the messages sent encoded. What the caller and the callee do is kept to
// the least (benchPeers): the INVITE is written from a template, the
// callee parses the INVITE it answers, not the ACK it gets.
func BenchmarkProxyINVITE486(b *testing.B) {
	srv := resolvetest.Start(b, "$ORIGIN far.test.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n"+
		"@ 3600 IN NAPTR 10 10 \"s\" \"SIP+D2U\" \"\" _sip._udp\n"+
		"_sip._udp 3600 IN SRV 0 10 5062 callee\ncallee 3600 IN A 198.51.100.30\n")
	for _, tc := range []struct {
		name string
		ruri string
		cfg  Config
		dns  bool
	}{
		{"static", "sip:carol@example.test", Config{Locations: map[string][]string{"carol@example.test": {"sip:carol@198.51.100.30:5062"}}}, false},
		{"dns", "sip:carol@far.test", Config{Rules: []Rule{{Domain: "far.test", Action: ActionResolve}}}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			peers := &benchPeers{}
			e := newTestEnv(b, tc.cfg, func(env *Env) {
				env.Network = peers
				if tc.dns {
					r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}})
					if err != nil {
						b.Fatal(err)
					}
					env.DNS = r
				}
			})
			i := 0
			var buf []byte
			call := func() {
				i++
				buf = appendBenchInvite(buf[:0], tc.ruri, i)
				m, err := sip.Parse(bytes.Clone(buf)) // the datagram's own buffer
				if err != nil {
					b.Fatal(err)
				}
				e.serve(m.(*sip.Request))
				inv := peers.invite()
				for ; inv == nil; inv = peers.invite() {
					// the DNS branch starts on the lookup pool
				}
				res := sip.NewResponse(inv, 486, "")
				res.To.Params = res.To.Params.Set("tag", "callee")
				buf = res.AppendTo(buf[:0])
				if m, err = sip.Parse(bytes.Clone(buf)); err != nil {
					b.Fatal(err)
				}
				if !e.l.HandleResponse(m.(*sip.Response)) {
					b.Fatal("486 matched no client transaction")
				}
				if i%1000 == 0 {
					e.clock.Advance(time.Minute) // transactions in Completed end
				}
			}
			call() // warms the resolver's cache
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				call()
			}
			b.StopTimer()
			if acks := peers.acks.Load(); acks != int64(i) {
				b.Errorf("%d ACKs for %d calls", acks, i)
			}
			if tc.dns {
				b.Logf("resolver %+v", e.p.env.DNS.Stats())
			}
		})
	}
}

// appendBenchInvite appends call n's INVITE from the caller to ruri.
func appendBenchInvite(b []byte, ruri string, n int) []byte {
	b = append(b, "INVITE "...)
	b = append(b, ruri...)
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKbench"...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a1\r\nTo: <"...)
	b = append(b, ruri...)
	b = append(b, ">\r\nCall-ID: bench-"...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:5070>\r\nContent-Length: 0\r\n\r\n"...)
}

// benchPeers is the network of BenchmarkProxyINVITE486: the callee keeps
// the last INVITE, parsed, and counts the ACKs.
type benchPeers struct {
	mu   sync.Mutex
	last *sip.Request
	acks atomic.Int64
}

func (n *benchPeers) WriteTo(_ string, _, _ netip.AddrPort, data []byte) error {
	if bytes.HasPrefix(data, []byte("ACK ")) {
		n.acks.Add(1)
		return nil
	}
	m, err := sip.Parse(bytes.Clone(data))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.last = m.(*sip.Request)
	n.mu.Unlock()
	return nil
}

func (n *benchPeers) Lookup(string, netip.AddrPort) *transport.Conn { return nil }

// invite returns and forgets the last INVITE sent.
func (n *benchPeers) invite() *sip.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.last
	n.last = nil
	return r
}

// BenchmarkProxyACK2xx is the ACK of an answered call through the proxy:
// it belongs to no transaction, so the server hands it to HandleACK, and
// it is forwarded statelessly along the recorded route (RFC 3261 §16.7
// step 10, §16.11).
func BenchmarkProxyACK2xx(b *testing.B) {
	e := newTestEnv(b, Config{}, nil)
	wire := "ACK sip:carol@198.51.100.30:5062 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKack1;rport\r\n" +
		"Route: <sip:192.0.2.1;lr>\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=a1\r\n" +
		"To: <sip:carol@example.test>;tag=callee\r\n" +
		"Call-ID: bench-ack@198.51.100.7\r\n" +
		"CSeq: 1 ACK\r\n" +
		"Content-Length: 0\r\n\r\n"
	in := Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn}
	ctx := context.Background()
	data := make([]byte, len(wire))
	b.ReportAllocs()
	for b.Loop() {
		copy(data, wire) // the transport's datagram
		m, err := sip.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		ack := m.(*sip.Request)
		ack.StampVia(callerIn)
		e.p.HandleACK(ctx, ack, in)
		if len(e.net.take()) != 1 {
			b.Fatal("ACK not forwarded")
		}
	}
}
