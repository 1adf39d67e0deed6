package ua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/dialog"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/sip/transaction"
)

const t1 = 500 * time.Millisecond

// peer is one UA under test with what it saw.
type peer struct {
	*UA
	calls chan *Call

	mu        sync.Mutex
	responses []string // "METHOD code"
	requests  []string // in-dialog requests seen
	messages  []string
}

func (p *peer) saw(list *[]string, s string) {
	p.mu.Lock()
	*list = append(*list, s)
	p.mu.Unlock()
}

func (p *peer) seen(list *[]string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), *list...)
}

func newPeer(t *testing.T, proto, user string, clock transaction.Clock, mod func(*Config)) *peer {
	t.Helper()
	p := &peer{calls: make(chan *Call, 100)}
	cfg := Config{
		Transport: proto,
		User:      user + "@example.test",
		Clock:     clock,
		OnCall:    func(c *Call) { c.Keep(); p.calls <- c },
		OnMessage: func(r *sip.Request) { p.saw(&p.messages, string(r.Body)) },
		OnRequest: func(_ *Call, r *sip.Request) { p.saw(&p.requests, r.Method) },
		OnResponse: func(req *sip.Request, res *sip.Response) {
			p.saw(&p.responses, fmt.Sprintf("%s %d", res.CSeq.Method, res.StatusCode))
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.UA = u
	return p
}

// target is the SIP URI that reaches p.
func (p *peer) target() string {
	s := "sip:" + p.aor.User + "@" + p.Addr().String()
	if p.Transport() == "TCP" {
		s += ";transport=tcp"
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func nextCall(t *testing.T, p *peer) *Call {
	t.Helper()
	select {
	case c := <-p.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no incoming call")
		return nil
	}
}

// drain runs the clock past every transaction timer and checks that both
// UAs hold nothing any more, then closes them.
func drain(t *testing.T, clock *transaction.FakeClock, peers ...*peer) {
	t.Helper()
	for _, p := range peers {
		waitFor(t, "calls to end", func() bool { return p.Stats().Calls == 0 })
	}
	time.Sleep(20 * time.Millisecond) // let the last messages land
	for range 3 {
		clock.Advance(64*t1 + 6*time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	for _, p := range peers {
		waitFor(t, "UA at rest", func() bool {
			s := p.Stats()
			return s.Transactions.ClientActive == 0 && s.Transactions.ServerActive == 0 && s.Dialogs == 0 && s.Calls == 0
		})
	}
	for _, p := range peers {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}
}

func newClock() *transaction.FakeClock { return transaction.NewFakeClock(time.Unix(1_700_000_000, 0)) }

func TestCall(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			t.Run("RFC3261 13 answer, BYE from the caller", func(t *testing.T) {
				clock := newClock()
				alice, bob := newPeer(t, proto, "alice", clock, nil), newPeer(t, proto, "bob", clock, nil)
				answered := make(chan error, 1)
				go func() {
					c := nextCall(t, bob)
					if err := c.Ring(context.Background()); err != nil {
						answered <- err
						return
					}
					answered <- c.Answer(context.Background())
					<-c.Done()
					if !errors.Is(c.Err(), ErrRemoteHangup) {
						t.Errorf("callee ended with %v", c.Err())
					}
				}()
				c, err := alice.Call(context.Background(), bob.target())
				if err != nil {
					t.Fatal(err)
				}
				if err := <-answered; err != nil {
					t.Fatalf("Answer: %v", err)
				}
				if c.State() != Established || c.Dialog().State() != dialog.Confirmed {
					t.Fatalf("state %v", c.State())
				}
				if !strings.Contains(string(c.RemoteSDP()), "m=audio") || !strings.Contains(string(c.RemoteSDP()), "PCMU/8000") {
					t.Errorf("answer SDP %q", c.RemoteSDP())
				}
				if got := strings.Join(alice.seen(&alice.responses), ","); got != "INVITE 180,INVITE 200" {
					t.Errorf("responses %s", got)
				}
				if proto == "tcp" {
					// In-dialog requests reuse the INVITE's connection.
					if c.Dialog().Conn() == nil {
						t.Error("TCP dialog lost its connection")
					}
				}
				if err := c.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
				if !contains(alice.seen(&alice.responses), "BYE 200") {
					t.Errorf("BYE not answered: %v", alice.seen(&alice.responses))
				}
				drain(t, clock, alice, bob)
			})
			t.Run("RFC3261 21.4.7 busy 486", func(t *testing.T) {
				clock := newClock()
				alice, bob := newPeer(t, proto, "alice", clock, nil), newPeer(t, proto, "bob", clock, nil)
				go func() { _ = nextCall(t, bob).Reject(486, "") }()
				_, err := alice.Call(context.Background(), bob.target())
				var se *StatusError
				if !errors.As(err, &se) || se.Code != 486 {
					t.Fatalf("Call: %v, want 486", err)
				}
				drain(t, clock, alice, bob)
			})
			t.Run("RFC3261 9 cancel before answer gets 487", func(t *testing.T) {
				clock := newClock()
				alice, bob := newPeer(t, proto, "alice", clock, nil), newPeer(t, proto, "bob", clock, nil)
				ringing := make(chan struct{})
				calleeEnded := make(chan error, 1)
				go func() {
					c := nextCall(t, bob)
					_ = c.Ring(context.Background())
					close(ringing)
					<-c.Done()
					calleeEnded <- c.Err()
				}()
				ctx, cancel := context.WithCancel(context.Background())
				go func() {
					<-ringing
					waitFor(t, "180 at the caller", func() bool { return contains(alice.seen(&alice.responses), "INVITE 180") })
					cancel()
				}()
				_, err := alice.Call(ctx, bob.target())
				var se *StatusError
				if !errors.Is(err, context.Canceled) || !errors.As(err, &se) || se.Code != 487 {
					t.Fatalf("Call: %v, want canceled with 487", err)
				}
				if err := <-calleeEnded; !errors.Is(err, ErrCancelled) {
					t.Errorf("callee: %v", err)
				}
				drain(t, clock, alice, bob)
			})
			t.Run("RFC3262 PRACK, RFC3311 UPDATE, RFC6086 INFO, re-INVITE, BYE from the callee", func(t *testing.T) {
				clock := newClock()
				alice := newPeer(t, proto, "alice", clock, func(c *Config) { c.Rel100 = Rel100Require })
				bob := newPeer(t, proto, "bob", clock, nil)
				callee := make(chan *Call, 1)
				go func() {
					c := nextCall(t, bob)
					if err := c.Ring(context.Background()); err != nil {
						t.Error(err)
					}
					if err := c.Answer(context.Background()); err != nil {
						t.Error(err)
					}
					callee <- c
				}()
				c, err := alice.Call(context.Background(), bob.target())
				if err != nil {
					t.Fatal(err)
				}
				bc := <-callee
				if got := strings.Join(alice.seen(&alice.responses), ","); got != "INVITE 180,PRACK 200,INVITE 200" {
					t.Errorf("responses %s", got)
				}
				if res, err := c.Update(context.Background(), nil); err != nil || !strings.Contains(string(res.Body), "m=audio") {
					t.Fatalf("UPDATE: %v", err)
				}
				if _, err := c.Info(context.Background(), "application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n")); err != nil {
					t.Fatalf("INFO: %v", err)
				}
				if _, err := c.ReInvite(context.Background(), nil); err != nil {
					t.Fatalf("re-INVITE: %v", err)
				}
				waitFor(t, "ACK of the re-INVITE", func() bool {
					r := bob.seen(&bob.requests)
					return len(r) > 0 && r[len(r)-1] == "ACK"
				})
				if got := strings.Join(bob.seen(&bob.requests), ","); got != "PRACK,ACK,UPDATE,INFO,INVITE,ACK" {
					t.Errorf("callee saw %s", got)
				}
				if bytesEqualFold(c.LocalSDP(), bc.RemoteSDP()) == false {
					t.Errorf("descriptions differ:\n%s\n%s", c.LocalSDP(), bc.RemoteSDP())
				}
				if err := bc.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
				<-c.Done()
				if !errors.Is(c.Err(), ErrRemoteHangup) {
					t.Errorf("caller ended with %v", c.Err())
				}
				drain(t, clock, alice, bob)
			})
			t.Run("RFC3261 11 OPTIONS, RFC3428 MESSAGE", func(t *testing.T) {
				clock := newClock()
				alice, bob := newPeer(t, proto, "alice", clock, nil), newPeer(t, proto, "bob", clock, nil)
				res, err := alice.Options(context.Background(), bob.target())
				if err != nil || res.StatusCode != 200 || !strings.Contains(res.Get("Allow"), "PRACK") {
					t.Fatalf("OPTIONS: %v %v", res, err)
				}
				if _, err := alice.Message(context.Background(), bob.target(), "text/plain", []byte("hello bob")); err != nil {
					t.Fatal(err)
				}
				if got := bob.seen(&bob.messages); len(got) != 1 || got[0] != "hello bob" {
					t.Errorf("messages %v", got)
				}
				drain(t, clock, alice, bob)
			})
		})
	}
}

func bytesEqualFold(a, b []byte) bool { return strings.EqualFold(string(a), string(b)) }

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// A burst of calls leaves no transactions, dialogs, calls or goroutines.
func TestBurst(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			clock := newClock()
			alice, bob := newPeer(t, proto, "alice", clock, nil), newPeer(t, proto, "bob", clock, nil)
			const n = 60
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					c := nextCall(t, bob)
					wg.Add(1)
					go func() {
						defer wg.Done()
						_ = c.Ring(context.Background())
						if err := c.Answer(context.Background()); err != nil {
							t.Error(err)
						}
						<-c.Done()
					}()
				}
			}()
			errs := make(chan error, n)
			for range n {
				go func() {
					c, err := alice.Call(context.Background(), bob.target())
					if err == nil {
						err = c.Hangup(context.Background())
					}
					errs <- err
				}()
			}
			for range n {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			wg.Wait()
			drain(t, clock, alice, bob)
		})
	}
}

// rawPeer is a UDP socket speaking SIP by hand, to play a peer that
// misbehaves exactly as a test needs.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newRawPeer(t *testing.T) *rawPeer {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c}
}

func (r *rawPeer) addr() string { return r.conn.LocalAddr().String() }

// read returns the next message, skipping 100 Trying.
func (r *rawPeer) read() (sip.Message, *net.UDPAddr) {
	r.t.Helper()
	buf := make([]byte, 65535)
	for {
		r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			r.t.Fatalf("raw peer read: %v", err)
		}
		m, err := sip.Parse(append([]byte(nil), buf[:n]...))
		if err != nil {
			r.t.Fatalf("raw peer parse: %v", err)
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode == 100 {
			continue
		}
		return m, from
	}
}

func (r *rawPeer) send(m sip.Message, to *net.UDPAddr) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDP([]byte(m.String()), to); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawPeer) invite(to string, extra string) *sip.Request {
	s := "INVITE sip:bob@" + to + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + r.addr() + ";branch=z9hG4bK" + randHex(6) + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:raw@example.test>;tag=raw1\r\nTo: <sip:bob@example.test>\r\n" +
		"Call-ID: " + randHex(6) + "@raw\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@" + r.addr() + ">\r\n" + extra +
		"Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseString(s)
	if err != nil {
		r.t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.Body = Offer("127.0.0.1", 5004, 1, 1)
	return req
}

func udpAddr(t *testing.T, ap string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", ap)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// RFC 3262 §3: the UAS retransmits a reliable 180 at T1, 2T1, 4T1, ...
// until PRACKed, and after 64*T1 rejects the INVITE with a 5xx.
func TestReliableProvisionalRetransmission(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	bob := newPeer(t, "udp", "bob", clock, nil)
	raw := newRawPeer(t)
	go func() {
		c := nextCall(t, bob)
		_ = c.Ring(context.Background())
		_ = c.Answer(context.Background()) // waits for the PRACK that never comes
	}()
	raw.send(raw.invite(bob.Addr().String(), "Require: 100rel\r\n"), udpAddr(t, bob.Addr().String()))
	m, _ := raw.read()
	first := m.(*sip.Response)
	if first.StatusCode != 180 || !first.HasOption("Require", "100rel") || first.Get("RSeq") == "" {
		t.Fatalf("first response %s", first)
	}
	elapsed := time.Duration(0)
	for i := 0; i < 6; i++ { // T1, 2T1, ..., 32T1: 63 T1 in all
		step := t1 << i
		clock.Advance(step)
		elapsed += step
		m, _ := raw.read()
		r := m.(*sip.Response)
		if r.StatusCode != 180 || r.Get("RSeq") != first.Get("RSeq") {
			t.Fatalf("at %v: %d RSeq %s", elapsed, r.StatusCode, r.Get("RSeq"))
		}
	}
	clock.Advance(64*t1 - elapsed)
	m, from := raw.read()
	final := m.(*sip.Response)
	if final.StatusCode/100 != 5 {
		t.Fatalf("after 64*T1: %d, want 5xx", final.StatusCode)
	}
	ack := transaction.NewACK(raw.invite(bob.Addr().String(), ""), final)
	ack.Via = final.Via
	ack.CallID = final.CallID
	raw.send(ack, from)
	drain(t, clock, bob)
}

// RFC 3261 §13.3.1.4: a 2xx is retransmitted (T1 doubling to T2) until
// the ACK; without one for 64*T1 the UAS sends BYE.
func TestOKWithoutACK(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	bob := newPeer(t, "udp", "bob", clock, nil)
	raw := newRawPeer(t)
	answer := make(chan error, 1)
	go func() { answer <- nextCall(t, bob).Answer(context.Background()) }()
	raw.send(raw.invite(bob.Addr().String(), ""), udpAddr(t, bob.Addr().String()))
	m, _ := raw.read()
	if m.(*sip.Response).StatusCode != 200 {
		t.Fatalf("got %s", m)
	}
	var at []time.Duration
	now := time.Duration(0)
	for now < 64*t1 {
		clock.Advance(t1 / 2)
		now += t1 / 2
		raw.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		buf := make([]byte, 65535)
		if n, from, err := raw.conn.ReadFromUDP(buf); err == nil {
			msg, _ := sip.Parse(buf[:n])
			switch x := msg.(type) {
			case *sip.Response:
				at = append(at, now)
			case *sip.Request:
				if x.Method != sip.BYE {
					t.Fatalf("unexpected %s", x.Method)
				}
				if now != 64*t1 {
					t.Errorf("BYE at %v, want 64*T1", now)
				}
				raw.send(sip.NewResponse(x, 200, ""), from)
			}
		}
	}
	want := "[500ms 1.5s 3.5s 7.5s 11.5s 15.5s 19.5s 23.5s 27.5s 31.5s]"
	if fmt.Sprint(at) != want {
		t.Errorf("2xx retransmitted at %v, want %s", at, want)
	}
	if err := <-answer; !errors.Is(err, ErrNoACK) {
		t.Errorf("Answer: %v", err)
	}
	drain(t, clock, bob)
}

// RFC 3261 §9.1, §13.2.2.4: a 2xx that crosses the CANCEL still makes a
// dialog: it is ACKed, then ended with BYE.
func TestCancelCrossesOK(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice := newPeer(t, "udp", "alice", clock, nil)
	raw := newRawPeer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := alice.Call(ctx, "sip:bob@"+raw.addr())
		done <- err
	}()
	m, from := raw.read()
	inv := m.(*sip.Request)
	ringing := sip.NewResponse(inv, 180, "")
	ringing.To.Params = ";tag=uas1"
	raw.send(ringing, from)
	waitFor(t, "180", func() bool { return contains(alice.seen(&alice.responses), "INVITE 180") })
	cancel()
	m, _ = raw.read()
	if r, ok := m.(*sip.Request); !ok || r.Method != sip.CANCEL {
		t.Fatalf("want CANCEL, got %s", m)
	}
	ok := sip.NewResponse(inv, 200, "")
	ok.To.Params = ";tag=uas1"
	ok.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: from.Port}}}
	ok.Contact[0].URI.Port = raw.conn.LocalAddr().(*net.UDPAddr).Port
	ok.ContentType, ok.Body = ContentTypeSDP, Offer("127.0.0.1", 5004, 1, 1)
	raw.send(ok, from)
	raw.send(sip.NewResponse(m.(*sip.Request), 200, ""), from) // 200 to the CANCEL
	var gotACK, gotBYE bool
	for !(gotACK && gotBYE) {
		m, from := raw.read()
		r, isReq := m.(*sip.Request)
		if !isReq {
			continue
		}
		switch r.Method {
		case sip.ACK:
			gotACK = true
			if r.CSeq.Seq != inv.CSeq.Seq || r.Via[0].Branch() == inv.Via[0].Branch() {
				t.Errorf("RFC3261 13.2.2.4 ACK: CSeq %d, branch %s", r.CSeq.Seq, r.Via[0].Branch())
			}
		case sip.BYE:
			if !gotACK {
				t.Error("BYE before ACK")
			}
			gotBYE = true
			raw.send(sip.NewResponse(r, 200, ""), from)
		}
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Call: %v", err)
	}
	drain(t, clock, alice)
}

// RFC 3261 §22.2, RFC 8760: REGISTER answers a 401 offering MD5 and
// SHA-256 with SHA-256, and the refresh reuses the nonce with nc=2.
func TestRegisterDigest(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	raw := newRawPeer(t)
	alice := newPeer(t, "udp", "alice", clock, func(c *Config) {
		c.Server = raw.addr()
		c.Password = "wonderland"
		c.Expires = 120 * time.Second
	})
	type reg struct {
		res *sip.Response
		err error
	}
	done := make(chan reg, 1)
	go func() {
		res, err := alice.Register(context.Background())
		done <- reg{res, err}
	}()
	m, from := raw.read()
	req := m.(*sip.Request)
	if req.Method != sip.REGISTER || req.URI.String() != "sip:example.test" || req.Get("Expires") != "120" {
		t.Fatalf("first REGISTER %s", req)
	}
	chal := sip.NewResponse(req, 401, "")
	chal.To.Params = ";tag=reg"
	chal.Add("WWW-Authenticate", `Digest realm="example.test", nonce="n1", qop="auth", algorithm=MD5`)
	chal.Add("WWW-Authenticate", `Digest realm="example.test", nonce="n1", qop="auth", algorithm=SHA-256`)
	raw.send(chal, from)
	check := func(req *sip.Request, nc uint32) {
		t.Helper()
		cr, err := digest.ParseCredentials(req.Get("Authorization"))
		if err != nil {
			t.Fatalf("Authorization %q: %v", req.Get("Authorization"), err)
		}
		if cr.Algorithm != "SHA-256" || cr.NC != nc || cr.Username != "alice" || cr.URI != "sip:example.test" {
			t.Errorf("credentials %+v", cr)
		}
		if !cr.Verify(sip.REGISTER, nil, digest.SHA256.Hash("alice", "example.test", "wonderland")) {
			t.Error("credentials do not verify")
		}
	}
	m, from = raw.read()
	req = m.(*sip.Request)
	check(req, 1)
	ok := sip.NewResponse(req, 200, "")
	ok.To.Params = ";tag=reg"
	c := alice.Contact()
	c.Params = ";expires=60"
	ok.Contact = []sip.Address{c}
	raw.send(ok, from)
	r := <-done
	if r.err != nil || alice.Registered() != 60*time.Second {
		t.Fatalf("Register: %v, granted %v", r.err, alice.Registered())
	}
	clock.Advance(30 * time.Second) // half the granted expiry
	m, from = raw.read()
	req = m.(*sip.Request)
	if req.Method != sip.REGISTER || req.CSeq.Seq != 3 {
		t.Fatalf("refresh %s", req)
	}
	check(req, 2)
	ok = sip.NewResponse(req, 200, "")
	ok.To.Params = ";tag=reg"
	ok.Contact = []sip.Address{c}
	raw.send(ok, from)
	go func() {
		res, err := alice.Unregister(context.Background())
		done <- reg{res, err}
	}()
	m, from = raw.read()
	req = m.(*sip.Request)
	if req.Get("Expires") != "0" {
		t.Fatalf("unregister %s", req)
	}
	ok = sip.NewResponse(req, 200, "")
	ok.To.Params = ";tag=reg"
	raw.send(ok, from)
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	drain(t, clock, alice)
}
