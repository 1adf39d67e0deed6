package rtpengine

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/media"
)

// A lost request or reply is sent again, byte for byte with the same
// cookie (rtpengine answers a known cookie from its cache), until a reply
// comes.
func TestRetransmitSameCookie(t *testing.T) {
	srv := newFakeNG(t, func(n int, d datagram) []string {
		if n < 2 {
			return nil // the first two are lost
		}
		return []string{"d6:result4:ponge"}
	})
	c, _ := newTestClient(t, Config{Address: srv.addr(), Timeout: 20 * time.Millisecond, Attempts: 3})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping with two lost requests: %v", err)
	}
	got := srv.received()
	if len(got) != 3 {
		t.Fatalf("server received %d datagrams, want 3", len(got))
	}
	for _, d := range got[1:] {
		if !bytes.Equal(d.raw, got[0].raw) {
			t.Errorf("retransmission %q differs from the request %q", d.raw, got[0].raw)
		}
	}
	if !strings.HasPrefix(got[0].cookie, "hlas") || got[0].req["command"] != "ping" {
		t.Errorf("request %q", got[0].raw)
	}
	if n := testutil.ToFloat64(c.met.retransmissions.WithLabelValues("ping")); n != 2 {
		t.Errorf("retransmissions_total = %v, want 2", n)
	}
	assertRequests(t, c, map[[2]string]float64{{"ping", "ok"}: 1})
}

// A daemon that never answers: media.ErrUnavailable after Attempts
// datagrams, all with the same cookie. Each request has its own cookie.
func TestTimeoutUnavailable(t *testing.T) {
	srv := newFakeNG(t, silent)
	c, _ := newTestClient(t, Config{Address: "udp:" + srv.addr(), Timeout: 10 * time.Millisecond, Attempts: 4})
	err := c.Ping(context.Background())
	if !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("ping: %v, want ErrUnavailable", err)
	}
	first := srv.wait(t)
	for range 3 {
		if d := srv.wait(t); !bytes.Equal(d.raw, first.raw) {
			t.Errorf("retransmission %q differs from %q", d.raw, first.raw)
		}
	}
	_, err = c.Offer(context.Background(), &media.Request{CallID: "c", FromTag: "f", SDP: []byte("v=0\r\n")})
	if !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("offer: %v, want ErrUnavailable", err)
	}
	if d := srv.wait(t); d.cookie == first.cookie {
		t.Errorf("a new request reused cookie %q", d.cookie)
	}
	assertRequests(t, c, map[[2]string]float64{{"ping", "timeout"}: 1, {"offer", "timeout"}: 1})
	if n, _ := c.calls.stats(); n != 0 {
		t.Errorf("a failed offer left %d calls remembered", n)
	}
}

// The caller's context bounds the wait, however long Timeout is.
func TestContextCancel(t *testing.T) {
	srv := newFakeNG(t, silent)
	c, _ := newTestClient(t, Config{Address: srv.addr(), Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(ctx) }()
	srv.wait(t)
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("ping: %v, want context.Canceled and ErrUnavailable", err)
	}
	// An expired context sends nothing.
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ping with a canceled context: %v", err)
	}
	if n := len(srv.received()); n != 1 {
		t.Errorf("server received %d datagrams, want 1", n)
	}
	assertRequests(t, c, map[[2]string]float64{{"ping", "canceled"}: 2})
}

// MaxPending requests waiting: one more fails at once.
func TestMaxPending(t *testing.T) {
	srv := newFakeNG(t, silent)
	c, _ := newTestClient(t, Config{Address: srv.addr(), Timeout: time.Hour, MaxPending: 1})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(ctx) }()
	srv.wait(t)
	if n := testutil.ToFloat64(c.met.pending); n != 1 {
		t.Errorf("pending_requests = %v, want 1", n)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, media.ErrUnavailable) || !strings.Contains(err.Error(), "already waiting") {
		t.Errorf("second ping: %v, want ErrUnavailable for too many waiting", err)
	}
	cancel()
	<-errc
	if n := len(srv.received()); n != 1 {
		t.Errorf("server received %d datagrams, want 1", n)
	}
	assertRequests(t, c, map[[2]string]float64{{"ping", "canceled"}: 1, {"ping", "busy"}: 1})
}

// Close fails the waiting requests and the later ones, and stops the
// reader (TestMain checks for leaked goroutines).
func TestClose(t *testing.T) {
	srv := newFakeNG(t, silent)
	c, err := New(Config{Address: srv.addr(), Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(context.Background()) }()
	srv.wait(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("waiting ping: %v, want ErrUnavailable", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("ping after Close: %v, want ErrUnavailable", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Datagrams that answer nothing we wait for are dropped and counted; the
// right reply still gets through.
func TestStrayDatagrams(t *testing.T) {
	srv := newFakeNG(t, func(int, datagram) []string {
		return []string{
			"!otherclient_1 d6:result4:ponge",      // someone else's cookie
			"!d6:result4:ponge",                    // no cookie at all
			"!" + strings.Repeat("x", 100) + " de", // a cookie too long
			"!\x00 de",                             // a cookie that is not text
			"!",                                    // empty
			"d6:result4:ponge",                     // ours
		}
	})
	c, _ := newTestClient(t, Config{Address: srv.addr()})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	// The five strays were read before the reply, on the one reader.
	if n := testutil.ToFloat64(c.met.stray); n != 5 {
		t.Errorf("stray_replies_total = %v, want 5", n)
	}
}

// Replies that are not NG replies: media.ErrUnavailable, counted as
// bad_reply.
func TestBadReplies(t *testing.T) {
	for _, doc := range []string{
		"d6:result2:ok",       // truncated
		"l6:result2:oke",      // not a dictionary
		"d6:result7:unknowne", // no such result
		"d5:noisei1ee",        // no result
		"d6:resulti1ee",       // result not a string
		"d6:result2:okee",     // trailing bytes
	} {
		t.Run(doc, func(t *testing.T) {
			srv := newFakeNG(t, answer(doc))
			c, _ := newTestClient(t, Config{Address: srv.addr()})
			if err := c.Ping(context.Background()); !errors.Is(err, media.ErrUnavailable) {
				t.Errorf("ping answered %q: %v, want ErrUnavailable", doc, err)
			}
			assertRequests(t, c, map[[2]string]float64{{"ping", "bad_reply"}: 1})
		})
	}
}

// rtpengine's refusals (daemon/call_interfaces.c) as media errors: the
// proxy answers them like the built-in relay's.
func TestErrorReasons(t *testing.T) {
	tests := []struct {
		reply string
		want  error // nil: none of media's
		text  string
	}{
		{"d6:result5:error12:error-reason15:Unknown call-ide", media.ErrNoSession, "Unknown call-id"},
		{"d6:result5:error12:error-reason38:Call-ID not found or tags didn't matche", media.ErrNoSession, "tags didn't match"},
		{"d6:result5:error12:error-reason19:Failed to parse SDPe", media.ErrBadSDP, "Failed to parse SDP"},
		{"d6:result5:error12:error-reason28:Incomplete SDP specificatione", media.ErrBadSDP, "Incomplete SDP"},
		{"d6:result5:error12:error-reason16:Ran out of portse", media.ErrNoPorts, "Ran out of ports"},
		{"d6:result5:error12:error-reason30:Parallel session limit reachede", media.ErrNoPorts, "limit reached"},
		{"d6:result10:load limit7:message4:busye", media.ErrNoPorts, "load limit busy"},
		{"d6:result5:error12:error-reason28:Invalid dialogue associatione", nil, "Invalid dialogue association"},
		{"d6:result5:errore", nil, "error without a reason"},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			srv := newFakeNG(t, answer(tc.reply))
			c, _ := newTestClient(t, Config{Address: srv.addr()})
			_, err := c.Offer(context.Background(), &media.Request{CallID: "c", FromTag: "f", SDP: []byte("v=0\r\n")})
			var re *ReplyError
			if !errors.As(err, &re) || re.Command != "offer" || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("offer: %v, want a ReplyError saying %q", err, tc.text)
			}
			for _, e := range []error{media.ErrNoSession, media.ErrBadSDP, media.ErrNoPorts, media.ErrUnavailable} {
				if errors.Is(err, e) != (e == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, e, !(e == tc.want))
				}
			}
			if n, _ := c.calls.stats(); n != 0 {
				t.Errorf("a refused offer left %d calls remembered", n)
			}
		})
	}
}

// An offer or answer reply without an SDP is no answer.
func TestReplyWithoutSDP(t *testing.T) {
	srv := newFakeNG(t, answer("d6:result2:oke"))
	c, _ := newTestClient(t, Config{Address: srv.addr()})
	if _, err := c.Offer(context.Background(), &media.Request{CallID: "c", FromTag: "f", SDP: []byte("v=0\r\n")}); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("offer: %v, want ErrUnavailable", err)
	}
	if err := c.Ping(context.Background()); err == nil {
		t.Errorf("ping answered ok, not pong: no error")
	}
}

// Config.Address forms, and what is refused.
func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"udp:127.0.0.1:2223":   "127.0.0.1:2223",
		"127.0.0.1:2223":       "127.0.0.1:2223",
		"udp:[::1]:2223":       "[::1]:2223",
		"[2001:db8::1]:22222":  "[2001:db8::1]:22222",
		"udp:rtpengine.lan:99": "rtpengine.lan:99",
		"localhost:2223":       "localhost:2223",
	} {
		if got, err := parseAddress(in); err != nil || got != want {
			t.Errorf("parseAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "udp:", "udp:127.0.0.1", "tcp:127.0.0.1:2223", "udp:127.0.0.1:0",
		"udp:127.0.0.1:65536", "udp::2223", "::1:2223", "udp:127.0.0.1:ng", "udp:127.0.0.1:-1"} {
		if got, err := parseAddress(in); err == nil {
			t.Errorf("parseAddress(%q) = %q, want an error", in, got)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"address":     {Address: "tcp:127.0.0.1:2223"},
		"timeout":     {Timeout: -time.Second},
		"attempts":    {Attempts: -1},
		"max pending": {MaxPending: -1},
		"max calls":   {MaxCalls: -1},
		"empty flag":  {Flags: []string{"strict-source", ""}},
	} {
		if c, err := New(cfg); err == nil {
			c.Close()
			t.Errorf("%s: New(%+v) accepted", name, cfg)
		}
	}
	reg := prometheus.NewRegistry()
	c, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c2, err := New(Config{Registerer: reg}); err == nil {
		c2.Close()
		t.Errorf("two clients registered the same metrics")
	}
}
