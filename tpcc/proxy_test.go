package tpcc

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/ua"
)

// recordRouter is a stateless UDP proxy that record-routes (RFC 3261
// §16.6, §16.11): just enough to put a route set in both legs' dialogs.
type recordRouter struct {
	t    *testing.T
	conn *net.UDPConn
	port int
	done chan struct{}

	mu   sync.Mutex
	seen []string // requests forwarded, "METHOD"
}

func newRecordRouter(t *testing.T) *recordRouter {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &recordRouter{t: t, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port, done: make(chan struct{})}
	go p.serve()
	return p
}

func (p *recordRouter) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

func (p *recordRouter) close() {
	p.conn.Close()
	<-p.done
}

func (p *recordRouter) forwarded(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.seen {
		if m == method {
			n++
		}
	}
	return n
}

func (p *recordRouter) isMe(u sip.URI) bool { return u.Host == "127.0.0.1" && u.Port == p.port }

func (p *recordRouter) serve() {
	defer close(p.done)
	buf := make([]byte, 65535)
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := sip.Parse(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *sip.Request:
			p.request(m)
		case *sip.Response:
			if len(m.Via) < 2 {
				continue
			}
			m.Via = m.Via[1:]
			p.send(m, m.Via[0].Host, m.Via[0].Port)
		}
	}
}

func (p *recordRouter) request(req *sip.Request) {
	if len(req.Route) > 0 && p.isMe(req.Route[0].URI) {
		req.Route = req.Route[1:]
	}
	next := req.URI
	if len(req.Route) > 0 {
		next = req.Route[0].URI
	}
	if req.Method == sip.INVITE && req.To.Tag() == "" {
		rr := sip.Address{URI: sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: p.port, Params: ";lr"}}
		req.RecordRoute = append([]sip.Address{rr}, req.RecordRoute...)
	}
	// A stateless branch (§16.11): the same for a request and its CANCEL
	// or ACK to a non-2xx.
	branch := "z9hG4bK-p" + req.Via[0].Branch()
	req.Via = append([]sip.Via{{Transport: "UDP", Host: "127.0.0.1", Port: p.port, Params: sip.Params(";branch=" + branch)}}, req.Via...)
	req.MaxForwards--
	p.mu.Lock()
	p.seen = append(p.seen, req.Method)
	p.mu.Unlock()
	p.send(req, next.Host, next.Port)
}

func (p *recordRouter) send(m sip.Message, host string, port int) {
	if port == 0 {
		port = 5060
	}
	_, _ = p.conn.WriteToUDP([]byte(m.String()), &net.UDPAddr{IP: net.ParseIP(host), Port: port})
}

// Legs through a record-routing proxy: setup, the re-INVITEs and both
// BYEs follow the route sets.
func TestThroughProxy(t *testing.T) {
	defer goleak.VerifyNone(t)
	proxy := newRecordRouter(t)
	defer proxy.close()
	r := newRig(t, answers, answers, nil)
	r.ctl.Close()
	r.cua.Close()
	u, err := ua.New(ua.Config{User: "click@example.test", Clock: r.clock, Server: proxy.addr()})
	if err != nil {
		t.Fatal(err)
	}
	r.cua = u
	if r.ctl, err = New(Config{UA: u, OnEvent: r.ev.add, Clock: r.clock}); err != nil {
		t.Fatal(err)
	}
	call := r.originate(t)
	ac, bc := r.a.call(t), r.b.call(t)
	waitFor(t, "connected", func() bool { return call.State() == StateConnected })
	if len(ac.Dialog().RouteSet()) != 1 || len(bc.Dialog().RouteSet()) != 1 {
		t.Fatalf("route sets: A %v, B %v", ac.Dialog().RouteSet(), bc.Dialog().RouteSet())
	}
	if audioPort(ac.RemoteSDP()) != "42000" || audioPort(bc.RemoteSDP()) != "41000" {
		t.Errorf("media not connected:\nA:\n%s\nB:\n%s", ac.RemoteSDP(), bc.RemoteSDP())
	}
	// INVITE to A, to B, the re-INVITE of A: all through the proxy.
	if n := proxy.forwarded(sip.INVITE); n != 3 {
		t.Errorf("proxy forwarded %d INVITEs, want 3", n)
	}
	if err := bc.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, "A's end", ac.Done())
	if !errors.Is(ac.Err(), ua.ErrRemoteHangup) {
		t.Errorf("A ended with %v", ac.Err())
	}
	if n := proxy.forwarded(sip.BYE); n != 2 {
		t.Errorf("proxy forwarded %d BYEs, want 2", n)
	}
	waitDone(t, "the call's end", call.Done())
	r.close(t)
}
