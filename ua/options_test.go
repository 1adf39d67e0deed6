package ua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// connect places a call from caller to callee with o; the callee rings
// and answers. It returns both ends once the callee has its ACK.
func connect(t *testing.T, caller, callee *peer, o CallOptions) (*Call, *Call) {
	t.Helper()
	answered := make(chan *Call, 1)
	go func() {
		c := nextCall(t, callee)
		_ = c.Ring(context.Background())
		if err := c.Answer(context.Background()); err != nil {
			t.Errorf("Answer: %v", err)
		}
		answered <- c
	}()
	c, err := caller.CallWith(context.Background(), callee.target(), o)
	if err != nil {
		t.Fatalf("CallWith: %v", err)
	}
	return c, <-answered
}

func hangup(t *testing.T, c *Call) {
	t.Helper()
	if err := c.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// RFC 3261 §13.2.1, RFC 3264 §4: an INVITE without an offer gets the
// offer in the 2xx and sends the answer in the ACK: AnswerOffer's, or
// without it the UA's own.
func TestCallWithNoOffer(t *testing.T) {
	defer goleak.VerifyNone(t)
	mine := Offer("127.0.0.1", 7000, 77, 1)
	for _, hooked := range []bool{true, false} {
		t.Run(fmt.Sprintf("AnswerOffer=%v", hooked), func(t *testing.T) {
			clock := newClock()
			alice := newPeer(t, "udp", "alice", clock, func(c *Config) { c.MediaPort = 40100 })
			bob := newPeer(t, "udp", "bob", clock, func(c *Config) { c.MediaPort = 40200 })
			var seen []byte
			o := CallOptions{NoOffer: true}
			if hooked {
				o.AnswerOffer = func(offer []byte) ([]byte, error) { seen = offer; return mine, nil }
			}
			c, bc := connect(t, alice, bob, o)
			inv := bc.Request()
			if len(inv.Body) != 0 || inv.ContentType != "" {
				t.Errorf("INVITE carries a body: %q", inv.Body)
			}
			if inv.HasOption("Supported", "100rel") || inv.HasOption("Require", "100rel") {
				t.Error("RFC 3262 §5: an INVITE without an offer advertises 100rel")
			}
			if !bytes.Contains(bc.LocalSDP(), []byte("m=audio 40200 ")) || !bytes.Equal(c.RemoteSDP(), bc.LocalSDP()) {
				t.Errorf("the 2xx's offer %q, caller's remote %q", bc.LocalSDP(), c.RemoteSDP())
			}
			want := mine
			if hooked {
				if !bytes.Equal(seen, bc.LocalSDP()) {
					t.Errorf("AnswerOffer got %q", seen)
				}
			} else {
				want, _ = Answer(bc.LocalSDP(), "127.0.0.1", 40100, 0, 0)
				want = mediaOf(want)
			}
			if got := bc.RemoteSDP(); !bytes.Equal(got, want) && !bytes.Equal(mediaOf(got), want) {
				t.Errorf("answer in the ACK:\n%s\nwant\n%s", got, want)
			}
			if !bytes.Equal(c.LocalSDP(), bc.RemoteSDP()) {
				t.Error("LocalSDP is not the answer sent")
			}
			hangup(t, c)
			drain(t, clock, alice, bob)
		})
	}
}

// mediaOf drops the o= line.
func mediaOf(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\r\n") {
		if !strings.HasPrefix(l, "o=") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\r\n"))
}

// An offer of the 2xx the AnswerOffer hook refuses: the call is ACKed and
// ended with BYE at once (RFC 3261 §13.2.2.4).
func TestCallWithNoOfferRefused(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice, bob := newPeer(t, "udp", "alice", clock, nil), newPeer(t, "udp", "bob", clock, nil)
	ended := make(chan error, 1)
	go func() {
		c := nextCall(t, bob)
		_ = c.Answer(context.Background())
		<-c.Done()
		ended <- c.Err()
	}()
	bad := errors.New("no thanks")
	_, err := alice.CallWith(context.Background(), bob.target(), CallOptions{NoOffer: true,
		AnswerOffer: func([]byte) ([]byte, error) { return nil, bad }})
	if !errors.Is(err, bad) {
		t.Fatalf("CallWith: %v", err)
	}
	if err := <-ended; !errors.Is(err, ErrRemoteHangup) {
		t.Errorf("callee ended with %v, want BYE", err)
	}
	if got := bob.seen(&bob.requests); strings.Join(got, ",") != "ACK,BYE" {
		t.Errorf("callee saw %v", got)
	}
	drain(t, clock, alice, bob)
}

// Offer, From, CallID, Headers and OnProvisional.
func TestCallWithOptions(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice, bob := newPeer(t, "udp", "alice", clock, nil), newPeer(t, "udp", "bob", clock, nil)
	offer := Offer("127.0.0.1", 7002, 5, 9)
	from, err := sip.ParseAddress(`"Bob Builder" <sip:bob@elsewhere.test>;tag=ignored`)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var prov []int
	c, bc := connect(t, alice, bob, CallOptions{
		Offer:   offer,
		From:    &from,
		CallID:  "fixed-call-id@test",
		Headers: []sip.Field{{Name: "Subject", Value: "click to call"}, {Name: "X-Hlas-Origination", Value: "o-1"}},
		OnProvisional: func(res *sip.Response) {
			mu.Lock()
			prov = append(prov, res.StatusCode)
			mu.Unlock()
		},
	})
	inv := bc.Request()
	if !bytes.Equal(inv.Body, offer) || !bytes.Equal(c.LocalSDP(), offer) {
		t.Errorf("offer sent %q", inv.Body)
	}
	if inv.From.DisplayName() != "Bob Builder" || inv.From.URI.String() != "sip:bob@elsewhere.test" {
		t.Errorf("From %s", inv.From.String())
	}
	if tag := inv.From.Tag(); tag == "" || tag == "ignored" {
		t.Errorf("From tag %q, want the UA's new one", tag)
	}
	if inv.CallID != "fixed-call-id@test" || c.Request().CallID != "fixed-call-id@test" {
		t.Errorf("Call-ID %s", inv.CallID)
	}
	if inv.Get("Subject") != "click to call" || inv.Get("X-Hlas-Origination") != "o-1" {
		t.Errorf("headers: Subject %q, X-Hlas-Origination %q", inv.Get("Subject"), inv.Get("X-Hlas-Origination"))
	}
	mu.Lock()
	if fmt.Sprint(prov) != "[180]" {
		t.Errorf("OnProvisional saw %v, want [180]", prov)
	}
	mu.Unlock()
	hangup(t, bc) // the From identity does not get in the way of the dialog
	<-c.Done()
	if !errors.Is(c.Err(), ErrRemoteHangup) {
		t.Errorf("caller ended with %v", c.Err())
	}
	drain(t, clock, alice, bob)
}

func TestCallWithBadOptions(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice := newPeer(t, "udp", "alice", clock, nil)
	for name, o := range map[string]CallOptions{
		"Offer and NoOffer":        {NoOffer: true, Offer: []byte("v=0\r\n")},
		"AnswerOffer alone":        {AnswerOffer: func([]byte) ([]byte, error) { return nil, nil }},
		"Via header":               {Headers: []sip.Field{{Name: "via", Value: "x"}}},
		"Content-Length (compact)": {Headers: []sip.Field{{Name: "l", Value: "0"}}},
		"header injection":         {Headers: []sip.Field{{Name: "Subject", Value: "a\r\nVia: evil"}}},
		"header name":              {Headers: []sip.Field{{Name: "Sub ject", Value: "a"}}},
		"Call-ID with a space":     {CallID: "a b"},
		"From without URI":         {From: &sip.Address{}},
	} {
		if _, err := alice.CallWith(context.Background(), "sip:bob@127.0.0.1:9", o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
	}
	if s := alice.Stats(); s.Calls != 0 || s.Transactions.ClientActive != 0 {
		t.Errorf("refused options left %+v", s)
	}
	drain(t, clock, alice)
}

// RFC 3261 §14.2 with an offer handler: the re-INVITE's offer goes to the
// handler, which takes its time; meanwhile another offer gets 500 with
// Retry-After and the UA's own re-INVITE is refused; the handler's answer
// is the 2xx's.
func TestOnOfferReInvite(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice, bob := newPeer(t, "udp", "alice", clock, nil), newPeer(t, "udp", "bob", clock, nil)
	entered, release := make(chan []byte, 1), make(chan struct{})
	answer := Offer("127.0.0.1", 7004, 3, 1)
	c, bc := connect(t, alice, bob, CallOptions{OnOffer: func(offer []byte) ([]byte, error) {
		entered <- offer
		<-release
		return answer, nil
	}})
	hold := bytes.Replace(Offer("127.0.0.1", 40000, 8, 2), []byte("sendrecv"), []byte("sendonly"), 1)
	type out struct {
		res *sip.Response
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := bc.ReInvite(context.Background(), hold)
		done <- out{res, err}
	}()
	if got := <-entered; !bytes.Equal(got, hold) {
		t.Fatalf("handler got %q", got)
	}
	var se *StatusError
	if res, err := bc.Update(context.Background(), nil); !errors.As(err, &se) || se.Code != 500 || res.Get("Retry-After") == "" {
		t.Errorf("UPDATE during the handler: %v, want 500 with Retry-After", err)
	}
	if _, err := c.ReInvite(context.Background(), nil); !errors.Is(err, ErrState) {
		t.Errorf("own re-INVITE during the handler: %v, want ErrState", err)
	}
	close(release)
	r := <-done
	if r.err != nil || !bytes.Equal(r.res.Body, answer) {
		t.Fatalf("re-INVITE: %v %q", r.err, r.res.Body)
	}
	waitFor(t, "the ACK", func() bool { r := alice.seen(&alice.requests); return r[len(r)-1] == "ACK" })
	if !bytes.Equal(c.RemoteSDP(), hold) || !bytes.Equal(c.LocalSDP(), answer) {
		t.Errorf("descriptions after the re-INVITE: remote %q local %q", c.RemoteSDP(), c.LocalSDP())
	}
	hangup(t, c)
	drain(t, clock, alice, bob)
}

// Handler failures and UPDATE offers (RFC 3311).
func TestOnOfferFailuresAndUpdate(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice, bob := newPeer(t, "udp", "alice", clock, nil), newPeer(t, "udp", "bob", clock, nil)
	var mu sync.Mutex
	var next error
	answer := Offer("127.0.0.1", 7006, 3, 1)
	c, bc := connect(t, alice, bob, CallOptions{})
	c.OnOffer(func([]byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		return answer, next
	})
	for _, tc := range []struct {
		err  error
		code int
	}{
		{errors.New("cannot"), 488},
		{fmt.Errorf("other leg: %w", &StatusError{Code: 491}), 491},
		{&StatusError{Code: 503}, 503},
	} {
		mu.Lock()
		next = tc.err
		mu.Unlock()
		var se *StatusError
		res, err := bc.ReInvite(context.Background(), nil)
		if !errors.As(err, &se) || se.Code != tc.code {
			t.Errorf("%v: re-INVITE got %v, want %d", tc.err, err, tc.code)
		}
		if tc.code == 503 && res.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	mu.Lock()
	next = nil
	mu.Unlock()
	res, err := bc.Update(context.Background(), nil)
	if err != nil || !bytes.Equal(res.Body, answer) {
		t.Fatalf("UPDATE: %v %q", err, res.Body)
	}
	hangup(t, bc)
	drain(t, clock, alice, bob)
}

// RFC 3264 §4 with an offer handler: a re-INVITE without SDP gets the
// handler's offer (called with nil) in the 2xx, and the ACK's answer goes
// to OnAnswer.
func TestOnOfferReInviteWithoutSDP(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newClock()
	alice := newPeer(t, "udp", "alice", clock, nil)
	raw := newRawPeer(t)
	offer := Offer("127.0.0.1", 7008, 4, 1)
	answers := make(chan []byte, 1)
	var gotNil atomic.Bool
	go func() {
		c := nextCall(t, alice)
		c.OnOffer(func(o []byte) ([]byte, error) { gotNil.Store(o == nil); return offer, nil })
		c.OnAnswer(func(a []byte) { answers <- a })
		_ = c.Answer(context.Background())
	}()
	dst := udpAddr(t, alice.Addr().String())
	inv := raw.invite(alice.Addr().String(), "")
	raw.send(inv, dst)
	m, _ := raw.read()
	ok := m.(*sip.Response)
	if ok.StatusCode != 200 {
		t.Fatalf("got %d", ok.StatusCode)
	}
	ack := transaction.NewACK(inv, ok)
	ack.Via[0].Params = sip.Params(";branch=z9hG4bK" + randHex(6))
	ack.CSeq.Method = sip.ACK
	raw.send(ack, dst)
	re := *inv
	re.To = ok.To
	re.URI = ok.Contact[0].URI
	re.CSeq = sip.CSeq{Seq: 2, Method: sip.INVITE}
	re.Via = []sip.Via{{Transport: "UDP", Host: "127.0.0.1", Port: raw.conn.LocalAddr().(*net.UDPAddr).Port,
		Params: sip.Params(";branch=z9hG4bK" + randHex(6))}}
	re.Body, re.ContentType = nil, ""
	raw.send(&re, dst)
	m, _ = raw.read()
	ok2 := m.(*sip.Response)
	if ok2.StatusCode != 200 || !bytes.Equal(ok2.Body, offer) || !gotNil.Load() {
		t.Fatalf("2xx to the offerless re-INVITE: %d %q (handler called with nil: %v)", ok2.StatusCode, ok2.Body, gotNil.Load())
	}
	ack2 := transaction.NewACK(&re, ok2)
	ack2.Via[0].Params = sip.Params(";branch=z9hG4bK" + randHex(6))
	ack2.CSeq.Method = sip.ACK
	mine := Offer("127.0.0.1", 5004, 1, 2)
	ack2.ContentType, ack2.Body = ContentTypeSDP, mine
	raw.send(ack2, dst)
	if got := <-answers; !bytes.Equal(got, mine) {
		t.Errorf("OnAnswer got %q", got)
	}
	bye := re
	bye.Method = sip.BYE
	bye.CSeq = sip.CSeq{Seq: 3, Method: sip.BYE}
	bye.Via = []sip.Via{{Transport: "UDP", Host: "127.0.0.1", Port: re.Via[0].Port, Params: sip.Params(";branch=z9hG4bK" + randHex(6))}}
	raw.send(&bye, dst)
	m, _ = raw.read()
	if r := m.(*sip.Response); r.StatusCode != 200 || r.CSeq.Method != sip.BYE {
		t.Fatalf("BYE: %s", m)
	}
	drain(t, clock, alice)
}

// NoRedirect: a 302 fails the call; the Contact it names is not called.
// Without it the UA follows the 302 to bob.
func TestCallWithNoRedirect(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			clock := newClock()
			alice, bob := newPeer(t, "udp", "alice", clock, nil), newPeer(t, "udp", "bob", clock, nil)
			raw := newRawPeer(t)
			go func() {
				m, from := raw.read()
				inv, ok := m.(*sip.Request)
				if !ok || inv.Method != sip.INVITE {
					return
				}
				res := sip.NewResponse(inv, 302, "")
				res.To.Params = res.To.Params.Set("tag", "r1")
				res.Contact = []sip.Address{{URI: mustURI(t, bob.target())}}
				raw.send(res, from)
				raw.read() // the ACK
			}()
			type result struct {
				c   *Call
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, err := alice.CallWith(context.Background(), "sip:x@"+raw.addr(), CallOptions{NoRedirect: !follow})
				done <- result{c, err}
			}()
			if follow {
				c := nextCall(t, bob)
				_ = c.Answer(context.Background())
				r := <-done
				if r.err != nil {
					t.Fatalf("followed call: %v", r.err)
				}
				_ = r.c.Hangup(context.Background())
			} else {
				r := <-done
				var se *StatusError
				if !errors.As(r.err, &se) || se.Code != 302 {
					t.Fatalf("CallWith: %v, want the 302", r.err)
				}
			}
			drain(t, clock, alice, bob)
			if !follow {
				select {
				case <-bob.calls:
					t.Fatal("the redirection's target was called")
				default:
				}
			}
		})
	}
}

func mustURI(t *testing.T, s string) sip.URI {
	t.Helper()
	u, err := sip.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
