package ua

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// stuckResolver never answers: each lookup waits for its context, or for
// release.
type stuckResolver struct {
	release chan struct{}
	mu      sync.Mutex
	hosts   []string
}

func newStuckResolver(t *testing.T) *stuckResolver {
	r := &stuckResolver{release: make(chan struct{})}
	t.Cleanup(func() { close(r.release) })
	return r
}

func (r *stuckResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.hosts = append(r.hosts, host)
	r.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.release:
		return nil, errors.New("released")
	}
}

func (r *stuckResolver) lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hosts)
}

// options is an OPTIONS request from the raw peer.
func (r *rawPeer) options(to string) *sip.Request {
	m, err := sip.ParseString("OPTIONS sip:x@" + to + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + r.addr() + ";branch=z9hG4bK" + randHex(6) + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:raw@example.test>;tag=o" + randHex(3) + "\r\nTo: <sip:x@example.test>\r\n" +
		"Call-ID: " + randHex(6) + "@raw\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		r.t.Fatal(err)
	}
	return m.(*sip.Request)
}

// readResponse returns the next response, skipping requests, or fails
// after d.
func (r *rawPeer) readResponse(d time.Duration) (*sip.Response, error) {
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		r.conn.SetReadDeadline(deadline)
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		m, err := sip.Parse(append([]byte(nil), buf[:n]...))
		if err != nil {
			return nil, err
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode != 100 {
			return res, nil
		}
	}
}

// A ceiling on DNS: a host that never resolves fails the request after
// Config.ResolveTimeout instead of hanging it.
func TestResolveTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	res := newStuckResolver(t)
	alice := newPeer(t, "udp", "alice", clock, func(c *Config) {
		c.Resolver = res
		c.ResolveTimeout = 100 * time.Millisecond
	})
	defer alice.Close()
	done := make(chan error, 1)
	go func() {
		_, err := alice.Options(context.Background(), "sip:bob@slow.invalid")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Options: %v, want the lookup's deadline", err)
		}
	case <-time.After(3 * time.Second):
		res.release <- struct{}{}
		<-done
		t.Fatal("a lookup that never answers hung the request")
	}
}

// A 2xx whose Contact resolves slowly must not stall the worker that
// handled it: the ACK is resolved and sent off the worker, and the other
// messages of its shard keep flowing.
func TestSlowContactDoesNotStallWorker(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	res := newStuckResolver(t)
	alice := newPeer(t, "udp", "alice", clock, func(c *Config) {
		c.Workers = 1
		c.Resolver = res
		c.ResolveTimeout = 300 * time.Millisecond
	})
	raw := newRawPeer(t)
	done := make(chan error, 1)
	go func() {
		_, err := alice.Call(context.Background(), "sip:bob@"+raw.addr())
		done <- err
	}()
	m, from := raw.read()
	inv := m.(*sip.Request)
	ok := sip.NewResponse(inv, 200, "")
	ok.To.Params = ";tag=slow"
	ok.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "slow.invalid", Port: 5060}}}
	ok.ContentType, ok.Body = ContentTypeSDP, Offer("127.0.0.1", 5004, 1, 1)
	raw.send(ok, from)
	waitFor(t, "the ACK's lookup", func() bool { return res.lookups() > 0 })
	raw.send(raw.options(alice.Addr().String()), from)
	r, err := raw.readResponse(time.Second)
	if err != nil || r.CSeq.Method != sip.OPTIONS || r.StatusCode != 200 {
		res.release <- struct{}{}
		t.Fatalf("OPTIONS behind a slow ACK: %v %v", r, err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Call: %v, want the ACK's lookup to fail", err)
	}
	drain(t, clock, alice)
}

// silentListener is a TCP listener that accepts connections and never
// writes on them: a TLS handshake with it hangs. Close closes the
// listener and every connection it accepted; call it (deferred) before
// goleak looks for the accept goroutine.
type silentListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newSilentListener(t *testing.T) *silentListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &silentListener{Listener: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns = append(l.conns, c)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *silentListener) addrPort() netip.AddrPort {
	return netip.MustParseAddrPort(l.Addr().String())
}

// accepted counts the connections accepted so far.
func (l *silentListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// closeConns closes the connections accepted so far.
func (l *silentListener) closeConns() {
	l.mu.Lock()
	for _, c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}

// Close closes the listener and the connections it accepted.
func (l *silentListener) Close() error {
	err := l.Listener.Close()
	l.closeConns()
	return err
}

// The sender dials without holding its lock: Conn, which the worker
// calls for every provisional response, does not wait for a dial.
func TestSenderDialsOutsideLock(t *testing.T) {
	defer goleak.VerifyNone(t)
	alice := newPeer(t, "udp", "alice", newClock(), nil)
	defer alice.Close()
	// A TCP listener that never speaks TLS: the handshake hangs.
	ln := newSilentListener(t)
	defer ln.Close()
	s := alice.newSender(hop{proto: transport.TLS, remote: ln.addrPort()}, nil, nil)
	sent := make(chan error, 1)
	go func() { sent <- s.Send(alice.newRequest(sip.OPTIONS, sip.URI{Scheme: "sip", Host: "127.0.0.1"})) }()
	waitFor(t, "the dial", func() bool { return ln.accepted() > 0 })
	start := time.Now()
	s.Conn()
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Conn waited %v for a dial", d)
	}
	ln.closeConns()
	<-sent
}

// A response whose connection has closed is sent on a new one in the
// background (RFC 3261 §18.2.2): the worker does not dial.
func TestResponseRedialInBackground(t *testing.T) {
	defer goleak.VerifyNone(t)
	alice := newPeer(t, "tcp", "alice", newClock(), nil)
	ln := newSilentListener(t)
	defer ln.Close()
	hang := ln.addrPort()
	gone, err := alice.tm.Dial(context.Background(), transport.TCP, alice.local, hang, "")
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	req := alice.newRequest(sip.OPTIONS, sip.URI{Scheme: "sip", Host: "127.0.0.1"})
	req.Via = []sip.Via{{Transport: "TLS", Host: "127.0.0.1", Port: int(hang.Port()), Params: ";branch=z9hG4bKx"}}
	// TLS to a listener that never answers the handshake: the dial hangs.
	p := &transport.Packet{Proto: transport.TLS, Remote: hang, Local: alice.local, Conn: gone}
	start := time.Now()
	_ = (&responseSender{u: alice.UA, p: p}).Send(alice.newResponse(req, 200, ""))
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Send waited %v for a dial", d)
	}
	waitFor(t, "the redial", func() bool { return ln.accepted() > 1 })
	if err := alice.Close(); err != nil {
		t.Error(err)
	}
}

// RFC 3261 §13.3.1: the UAS must answer every INVITE. A call OnCall
// neither answered nor kept is rejected with 500 when OnCall returns.
func TestUnansweredCallRejected(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice := newPeer(t, "udp", "alice", clock, nil)
	bob := newPeer(t, "udp", "bob", clock, func(c *Config) { c.OnCall = func(*Call) {} })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := alice.Call(ctx, bob.target())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 {
		t.Fatalf("Call: %v, want 500", err)
	}
	drain(t, clock, alice, bob)
}

// Early dialogs are capped per INVITE: provisional responses with new To
// tags beyond Config.MaxForks create nothing.
func TestMaxForks(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice := newPeer(t, "udp", "alice", clock, func(c *Config) { c.MaxForks = 4 })
	raw := newRawPeer(t)
	done := make(chan error, 1)
	go func() {
		_, err := alice.Call(context.Background(), "sip:bob@"+raw.addr())
		done <- err
	}()
	m, from := raw.read()
	inv := m.(*sip.Request)
	const n = 10
	for i := range n {
		r := sip.NewResponse(inv, 180, "")
		r.To.Params = sip.Params(";tag=fork" + strconv.Itoa(i))
		r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: raw.conn.LocalAddr().(*net.UDPAddr).Port}}}
		raw.send(r, from)
	}
	waitFor(t, "the 180s", func() bool {
		c := 0
		for _, s := range alice.seen(&alice.responses) {
			if s == "INVITE 180" {
				c++
			}
		}
		return c == n
	})
	if got := alice.Stats().Dialogs; got != 4 {
		t.Errorf("%d early dialogs, want MaxForks 4", got)
	}
	busy := sip.NewResponse(inv, 486, "")
	busy.To.Params = ";tag=fork0"
	raw.send(busy, from)
	var se *StatusError
	if err := <-done; !errors.As(err, &se) || se.Code != 486 {
		t.Errorf("Call: %v", err)
	}
	drain(t, clock, alice)
}

// RFC 3261 §22.2: the early dialogs of a challenged INVITE end with it;
// the retried INVITE starts afresh.
func TestAuthRetryDropsEarlyDialogs(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice := newPeer(t, "udp", "alice", clock, func(c *Config) { c.Password = "secret" })
	raw := newRawPeer(t)
	type out struct {
		c   *Call
		err error
	}
	done := make(chan out, 1)
	go func() {
		c, err := alice.Call(context.Background(), "sip:bob@"+raw.addr())
		done <- out{c, err}
	}()
	m, from := raw.read()
	inv := m.(*sip.Request)
	ring := sip.NewResponse(inv, 180, "")
	ring.To.Params = ";tag=first"
	raw.send(ring, from)
	waitFor(t, "the early dialog", func() bool { return alice.Stats().Dialogs == 1 })
	chal := sip.NewResponse(inv, 407, "")
	chal.To.Params = ";tag=first"
	chal.Add("Proxy-Authenticate", `Digest realm="example.test", nonce="n1", qop="auth", algorithm=MD5`)
	raw.send(chal, from)
	m, from = raw.read()
	for m.(*sip.Request).Method == sip.ACK {
		m, from = raw.read()
	}
	inv2 := m.(*sip.Request)
	if inv2.Method != sip.INVITE || inv2.Get("Proxy-Authorization") == "" {
		t.Fatalf("retry %s", inv2)
	}
	if got := alice.Stats().Dialogs; got != 0 {
		t.Errorf("%d dialogs left from the challenged INVITE", got)
	}
	alice.UA.mu.Lock()
	var calls []*Call
	for c := range alice.UA.calls {
		calls = append(calls, c)
	}
	alice.UA.mu.Unlock()
	for _, c := range calls {
		if d := c.Dialog(); d != nil {
			t.Errorf("the retried call still holds dialog %s", d.ID())
		}
		if s := c.State(); s != Calling {
			t.Errorf("the retried call is %s", s)
		}
	}
	ok := sip.NewResponse(inv2, 200, "")
	ok.To.Params = ";tag=second"
	ok.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: raw.conn.LocalAddr().(*net.UDPAddr).Port}}}
	ok.ContentType, ok.Body = ContentTypeSDP, Offer("127.0.0.1", 5004, 1, 1)
	raw.send(ok, from)
	var r out
	select {
	case r = <-done:
	case <-time.After(3 * time.Second):
		t.Fatalf("no answer to the 200; responses %v", alice.seen(&alice.responses))
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := alice.Stats().Dialogs; got != 1 || r.c.Dialog().ID().RemoteTag != "second" {
		t.Errorf("%d dialogs, call on %s", got, r.c.Dialog().ID())
	}
	go func() {
		for {
			m, from := raw.read()
			if b, ok := m.(*sip.Request); ok && b.Method == sip.BYE {
				raw.send(sip.NewResponse(b, 200, ""), from)
				return
			}
		}
	}()
	if err := r.c.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	drain(t, clock, alice)
}

// Config.MaxTransactions: a new request beyond the ceiling gets 503 with
// Retry-After (RFC 3261 §21.5.4).
func TestMaxTransactions(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	bob := newPeer(t, "udp", "bob", clock, func(c *Config) { c.MaxTransactions = 1 })
	raw := newRawPeer(t)
	to := udpAddr(t, bob.Addr().String())
	raw.send(raw.options(bob.Addr().String()), to)
	if r, err := raw.readResponse(2 * time.Second); err != nil || r.StatusCode != 200 {
		t.Fatalf("first OPTIONS: %v %v", r, err)
	}
	raw.send(raw.options(bob.Addr().String()), to)
	r, err := raw.readResponse(2 * time.Second)
	if err != nil || r.StatusCode != 503 || r.Get("Retry-After") == "" {
		t.Fatalf("OPTIONS beyond the ceiling: %v %v", r, err)
	}
	drain(t, clock, bob)
}

// Register right after Unregister, while the refresher is still busy with
// a refresh, keeps the new binding fresh.
func TestRegisterAfterUnregisterDuringRefresh(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	raw := newRawPeer(t)
	alice := newPeer(t, "udp", "alice", clock, func(c *Config) {
		c.Server = raw.addr()
		c.Expires = 60 * time.Second
	})
	type reg struct {
		res *sip.Response
		err error
	}
	done := make(chan reg, 1)
	answer := func(req *sip.Request, from *net.UDPAddr) {
		ok := sip.NewResponse(req, 200, "")
		ok.To.Params = ";tag=reg"
		if req.Get("Expires") != "0" {
			c := alice.Contact()
			c.Params = ";expires=60"
			ok.Contact = []sip.Address{c}
		}
		raw.send(ok, from)
	}
	next := func(expires string) (*sip.Request, *net.UDPAddr) {
		t.Helper()
		m, from := raw.read()
		req := m.(*sip.Request)
		if req.Method != sip.REGISTER || req.Get("Expires") != expires {
			t.Fatalf("want REGISTER Expires %s, got %s", expires, req)
		}
		return req, from
	}
	go func() { res, err := alice.Register(context.Background()); done <- reg{res, err} }()
	answer(next("60"))
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	clock.Advance(30 * time.Second)
	refresh, refreshFrom := next("60") // left unanswered for now: the refresher waits
	go func() { res, err := alice.Unregister(context.Background()); done <- reg{res, err} }()
	answer(next("0"))
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	go func() { res, err := alice.Register(context.Background()); done <- reg{res, err} }()
	answer(next("60"))
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	answer(refresh, refreshFrom)
	waitFor(t, "the old refresh to finish", func() bool { return contains200(alice.seen(&alice.responses), 4) })
	time.Sleep(20 * time.Millisecond)
	clock.Advance(30 * time.Second)
	raw.conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 65535)
	n, from, err := raw.conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no refresh after Register following Unregister: %v", err)
	}
	m, _ := sip.Parse(buf[:n])
	if req, ok := m.(*sip.Request); !ok || req.Method != sip.REGISTER || req.Get("Expires") != "60" {
		t.Fatalf("want a refresh, got %s", m)
	} else {
		answer(req, from)
	}
	go func() { res, err := alice.Unregister(context.Background()); done <- reg{res, err} }()
	answer(next("0"))
	<-done
	drain(t, clock, alice)
}

func contains200(list []string, n int) bool {
	c := 0
	for _, s := range list {
		if s == "REGISTER 200" {
			c++
		}
	}
	return c >= n
}

// RFC 3261 §10.2.4: an absurd expiry from the registrar is clamped, not
// overflowed into a negative duration.
func TestGrantedExpiryClamp(t *testing.T) {
	contact := sip.Address{URI: sip.URI{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5060}}
	for _, tc := range []struct {
		name, param, header string
		want                time.Duration
	}{
		{"contact expires", "60", "", 60 * time.Second},
		{"contact expires overflowing Duration", "99999999999", "", maxExpiry},
		{"contact expires beyond int64", "99999999999999999999999", "", maxExpiry},
		{"Expires header overflowing Duration", "", "99999999999", maxExpiry},
		{"negative falls back to asked", "-5", "", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &sip.Response{StatusCode: 200}
			if tc.param != "" {
				c := contact
				c.Params = sip.Params(";expires=" + tc.param)
				res.Contact = []sip.Address{c}
			}
			if tc.header != "" {
				res.Add("Expires", tc.header)
			}
			if got := grantedExpiry(res, contact, time.Hour); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// The queues close after the transport's readers stop (Manager.Close
// waits for them), so enqueue needs no lock: closing under a flood of
// requests neither panics nor races.
func TestCloseUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t)
	for range 5 {
		bob := newPeer(t, "udp", "bob", newClock(), func(c *Config) { c.QueueSize = 4; c.Workers = 2 })
		raw := newRawPeer(t)
		to := udpAddr(t, bob.Addr().String())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					b := []byte(raw.options(bob.Addr().String()).String())
					_, _ = raw.conn.WriteToUDP(b, to)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if err := bob.Close(); err != nil {
			t.Error(err)
		}
		close(stop)
		wg.Wait()
	}
}
