package server

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// memServer is a Server run without sockets: a message goes in through
// process, as a worker takes it from its queue, and what the server would
// send over UDP is recorded per destination. Its clock is a fakeClock.
type memServer struct {
	*Server
	local netip.AddrPort
	clock *fakeClock

	mu    sync.Mutex
	boxes map[netip.AddrPort]chan []byte
}

// fakeClock is a Server.now that moves only when told.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Duration      { return time.Duration(c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// newMemServer builds a server with New and starts what Start would,
// except the listeners and the workers: the registrar's writer, and the
// addresses it believes its own (127.0.0.1:5060 and cfg.Domains).
func newMemServer(tb testing.TB, cfg Config) *memServer {
	tb.Helper()
	srv := newTestServer(tb, cfg)
	m := &memServer{
		Server: srv, local: netip.MustParseAddrPort("127.0.0.1:5060"), clock: &fakeClock{},
		boxes: map[netip.AddrPort]chan []byte{},
	}
	srv.now = m.clock.now
	srv.writeTo = m.record
	srv.self = newSelfAddrs(srv.cfg.Domains, []Addr{{Proto: "UDP", Addr: m.local}})
	srv.proxy.SetListeners([]proxy.Listener{{Proto: "UDP", Addr: m.local}})
	srv.registrar.Start()
	return m
}

// record is the server's writeTo: a copy of b goes to dst's box.
func (m *memServer) record(_ string, _, dst netip.AddrPort, b []byte) error {
	box := m.box(dst)
	select {
	case box <- append([]byte(nil), b...):
	default: // a full box loses messages; tests read theirs
	}
	return nil
}

// box returns the messages sent to dst.
func (m *memServer) box(dst netip.AddrPort) chan []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.boxes[dst]
	if b == nil {
		b = make(chan []byte, 64)
		m.boxes[dst] = b
	}
	return b
}

// receive processes data as if it had come from src over UDP and had
// waited for its worker from at until now on the server's clock.
func (m *memServer) receive(data []byte, src netip.AddrPort, at time.Duration) {
	p := &transport.Packet{Data: data, Proto: transport.UDP, Local: m.local, Remote: src}
	msg, err := sip.Parse(data)
	m.process(context.Background(), work{p: p, msg: msg, err: err, at: at})
}

// next returns the next message sent to dst, parsed; it fails the test
// when none comes within 5 s.
func (m *memServer) next(tb testing.TB, dst netip.AddrPort) *sip.Response {
	tb.Helper()
	select {
	case b := <-m.box(dst):
		msg, err := sip.Parse(b)
		if err != nil {
			tb.Fatalf("sent message does not parse: %v\n%s", err, b)
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			tb.Fatalf("sent a request:\n%s", b)
		}
		return res
	case <-time.After(5 * time.Second):
		tb.Fatalf("nothing sent to %s", dst)
		return nil
	}
}

// nothingSent fails the test when dst has a message waiting. Called after
// process returned, it sees what processing sent synchronously.
func (m *memServer) nothingSent(tb testing.TB, dst netip.AddrPort) {
	tb.Helper()
	select {
	case b := <-m.box(dst):
		tb.Fatalf("sent to %s:\n%s", dst, b)
	default:
	}
}
