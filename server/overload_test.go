package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// sipMessage writes a request from 192.0.2.10:5060 to the server at
// 127.0.0.1:5060; toTag "" makes it out of dialog.
func sipMessage(method, toTag, branch, callID string) []byte {
	to := "<sip:127.0.0.1:5060>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	cseq := method
	if method == sip.ACK || method == sip.CANCEL {
		cseq = sip.INVITE
		if method == sip.CANCEL {
			cseq = sip.CANCEL
		}
	}
	return []byte(method + " sip:127.0.0.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=a1\r\n" +
		"To: " + to + "\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 " + cseq + "\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// TestQueueDelayShedding: a request is processed or refused by how long
// it waited for its worker (Config.MaxQueueDelay) and by what it is.
func TestQueueDelayShedding(t *testing.T) {
	const bound = 20 * time.Millisecond
	client := netip.MustParseAddrPort("192.0.2.10:5060")
	tests := []struct {
		name   string
		method string
		toTag  string
		late   bool
		want   int // 0: nothing sent
	}{
		{"new OPTIONS in time is processed", sip.OPTIONS, "", false, 200},
		{"new OPTIONS waited too long: 503", sip.OPTIONS, "", true, 503},
		{"new REGISTER waited too long: 503", sip.REGISTER, "", true, 503},
		{"new INVITE waited too long: 503", sip.INVITE, "", true, 503},
		{"new SUBSCRIBE waited too long: 503", sip.SUBSCRIBE, "", true, 503},
		{"new MESSAGE waited too long: 503", sip.MESSAGE, "", true, 503},
		{"in-dialog INFO is processed however late", sip.INFO, "b1", true, 405},
		{"in-dialog re-INVITE is processed however late", sip.INVITE, "b1", true, 405},
		{"BYE is processed however late", sip.BYE, "b1", true, 405},
		{"RFC 3261 9.2 CANCEL is processed however late: 481 without its INVITE", sip.CANCEL, "", true, 481},
		{"RFC 3261 17 ACK is processed however late, never answered", sip.ACK, "b1", true, 0},
	}
	srv := newMemServer(t, Config{Domains: []string{"example.test"}, MaxQueueDelay: bound})
	srv.clock.advance(time.Hour)
	shed := 0.0
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := srv.now() - bound // waited exactly the bound: in time
			if tc.late {
				at -= time.Millisecond
			}
			before := srv.txl.Stats().ServerActive
			srv.receive(sipMessage(tc.method, tc.toTag, fmt.Sprint("shed", i), fmt.Sprintf("shed-%d@test", i)), client, at)
			if tc.want == 0 {
				srv.nothingSent(t, client)
				return
			}
			res := srv.next(t, client)
			if res.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.want)
			}
			if res.StatusCode == 503 {
				shed++
				if res.Get("Retry-After") == "" {
					t.Error("503 without Retry-After (RFC 3261 21.5.4)")
				}
				if res.To.Tag() == "" {
					t.Error("503 without a To tag (RFC 3261 8.2.6.2)")
				}
				if after := srv.txl.Stats().ServerActive; after != before {
					t.Errorf("%d server transactions after the 503, %d before: a refusal must leave none", after, before)
				}
			}
		})
	}
	wantDropped(t, srv.Server, "queue_delay", shed)
}

// TestQueueDelayResponsesNeverShed: a response completes a transaction,
// so it is processed however late (here: stray, so dropped as such).
func TestQueueDelayResponsesNeverShed(t *testing.T) {
	srv := newMemServer(t, Config{})
	srv.clock.advance(time.Hour)
	res := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnone\r\n" +
		"From: <sip:a@example.test>;tag=1\r\nTo: <sip:b@example.test>;tag=2\r\nCall-ID: r@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	srv.receive([]byte(res), netip.MustParseAddrPort("192.0.2.20:5060"), 0)
	wantDropped(t, srv.Server, "stray_response", 1)
	wantDropped(t, srv.Server, "queue_delay", 0)
}

// TestQueueDelayRetransmissionAbsorbed: a late retransmission of a request
// whose transaction is still being processed is absorbed by it, not
// refused with a 503 that would contradict the answer to come (RFC 3261
// 17.2.2).
func TestQueueDelayRetransmissionAbsorbed(t *testing.T) {
	srv := newMemServer(t, Config{})
	busy, release := make(chan struct{}), make(chan struct{})
	next := srv.handler
	srv.handler = HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		close(busy)
		<-release
		next.ServeSIP(ctx, tx, req)
	})
	client := netip.MustParseAddrPort("192.0.2.10:5060")
	msg := sipMessage(sip.OPTIONS, "", "retrans", "retrans@test")
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.receive(msg, client, srv.now()) // in time: processed, blocks in the handler
	}()
	<-busy
	srv.clock.advance(time.Hour)
	srv.receive(append([]byte(nil), msg...), client, 0) // the retransmission, late
	srv.nothingSent(t, client)
	close(release)
	<-done
	if res := srv.next(t, client); res.StatusCode != 200 {
		t.Fatalf("got %d, want 200", res.StatusCode)
	}
	wantDropped(t, srv.Server, "queue_delay", 0)
}

// TestQueueDelayStatelessProxy: in the stateless mode (RFC 3261 16.11) a
// late new request is refused the same way, without a transaction.
func TestQueueDelayStatelessProxy(t *testing.T) {
	cfg := Config{}
	cfg.Routing.Mode = "stateless"
	srv := newMemServer(t, cfg)
	srv.clock.advance(time.Hour)
	client := netip.MustParseAddrPort("192.0.2.10:5060")
	srv.receive(sipMessage(sip.OPTIONS, "", "sl", "sl@test"), client, 0)
	if res := srv.next(t, client); res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Fatalf("got %d %q, want 503 with Retry-After", res.StatusCode, res.Get("Retry-After"))
	}
}

// TestQueueDelayOverUDP: while the only worker is busy, requests queue;
// once they have waited longer than max_queue_delay they get 503 with
// Retry-After when their turn comes, and requests arriving after that are
// served again.
func TestQueueDelayOverUDP(t *testing.T) {
	const bound = 20 * time.Millisecond
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, DataDir: t.TempDir(), DNS: testDNS(t), Workers: 1, MaxQueueDelay: bound}
	clock := &fakeClock{}
	h := startHeld(t, cfg, func(srv *Server) { srv.now = clock.now })
	srv, c := h.srv, h.c
	// optionsAnswer reads responses until the one to OPTIONS (the INFO's
	// comes in between).
	optionsAnswer := func() *sip.Response {
		t.Helper()
		for {
			res := readResponse(t, c, 5*time.Second)
			if res == nil {
				t.Fatal("no answer to OPTIONS")
			}
			if res.CSeq.Method == sip.OPTIONS {
				return res
			}
		}
	}
	h.send(t, "INFO") // occupies the worker
	<-h.busy
	h.send(t, "OPTIONS") // waits in the queue
	for deadline := time.Now().Add(5 * time.Second); srv.queued() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the OPTIONS never reached the queue")
		}
	}
	clock.advance(bound + time.Millisecond)
	close(h.release)
	if res := optionsAnswer(); res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Fatalf("queued too long: got %d %q, want 503 with Retry-After", res.StatusCode, res.Get("Retry-After"))
	}
	h.send(t, "OPTIONS")
	if res := optionsAnswer(); res.StatusCode != 200 {
		t.Fatalf("after the backlog: got %d, want 200", res.StatusCode)
	}
	wantDropped(t, srv, "queue_delay", 1)
}

// TestQueueFull: with its worker's queue full (queue_size), the reader
// refuses a request itself with 503 and Retry-After, and drops what it
// cannot answer (an ACK, a response, an unparsable datagram) without a
// word; each counts as overload, and the queue keeps what it held.
func TestQueueFull(t *testing.T) {
	srv := newMemServer(t, Config{Workers: 1, QueueSize: 1}) // no worker runs: the queue stays full
	client := netip.MustParseAddrPort("192.0.2.10:5060")
	enqueue := func(data []byte) {
		srv.enqueue(&transport.Packet{Data: data, Proto: transport.UDP, Local: srv.local, Remote: client})
	}
	enqueue(sipMessage(sip.OPTIONS, "", "q0", "q0@test"))
	srv.nothingSent(t, client)
	tests := []struct {
		name string
		data []byte
		want int // 0: nothing sent
	}{
		{"RFC 3261 21.5.4 a new request: 503 with Retry-After", sipMessage(sip.INVITE, "", "q1", "q1@test"), 503},
		{"an in-dialog request: 503 too, nothing reads it", sipMessage(sip.BYE, "b1", "q2", "q2@test"), 503},
		{"RFC 3261 17 an ACK is never answered", sipMessage(sip.ACK, "b1", "q3", "q3@test"), 0},
		{"a response is dropped", []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKq4\r\n" +
			"From: <sip:a@example.test>;tag=1\r\nTo: <sip:b@example.test>;tag=2\r\nCall-ID: q4@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"), 0},
		{"an unparsable datagram is dropped", []byte("not SIP\r\n\r\n"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enqueue(tc.data)
			if tc.want == 0 {
				srv.nothingSent(t, client)
				return
			}
			res := srv.next(t, client)
			if res.StatusCode != tc.want || res.Get("Retry-After") == "" || res.To.Tag() == "" {
				t.Fatalf("got %d, Retry-After %q, To tag %q; want %d with both", res.StatusCode, res.Get("Retry-After"), res.To.Tag(), tc.want)
			}
		})
	}
	wantDropped(t, srv.Server, "overload", float64(len(tests)))
	if n := srv.queued(); n != 1 {
		t.Errorf("%v messages queued, want the first one", n)
	}
}

// TestMetricsPreResolved: the counters resolved once count into the very
// series WithLabelValues names, and only those counted appear.
func TestMetricsPreResolved(t *testing.T) {
	srv := newMemServer(t, Config{})
	client := netip.MustParseAddrPort("192.0.2.10:5060")
	srv.receive(sipMessage(sip.OPTIONS, "", "m1", "m1@test"), client, srv.now())
	srv.next(t, client)
	srv.receive(sipMessage("FOO", "", "m2", "m2@test"), client, srv.now())
	srv.next(t, client)
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(srv.met.received.WithLabelValues("request", "OPTIONS")), 1, `received{request,OPTIONS}`},
		{testutil.ToFloat64(srv.met.received.WithLabelValues("request", "other")), 1, `received{request,other}`},
		{testutil.ToFloat64(srv.met.responses.WithLabelValues("200")), 1, `responses_sent{200}`},
		{testutil.ToFloat64(srv.met.responses.WithLabelValues("501")), 1, `responses_sent{501}`},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	// Only what was counted has a series: no zero series for the other
	// methods and codes.
	if n := testutil.CollectAndCount(srv.met.received); n != 2 {
		t.Errorf("%d received series, want 2", n)
	}
	if n := testutil.CollectAndCount(srv.met.responses); n != 2 {
		t.Errorf("%d responses series, want 2", n)
	}
}

func TestConfigValidateOverloadAndRuntime(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string // substring naming the field; "" for valid
	}{
		{"defaults", Config{}, ""},
		{"max_queue_delay 50ms", Config{MaxQueueDelay: 50 * time.Millisecond}, ""},
		{"max_queue_delay negative", Config{MaxQueueDelay: -time.Second}, "max_queue_delay"},
		{"max_queue_delay below 1ms", Config{MaxQueueDelay: 500 * time.Microsecond}, "max_queue_delay"},
		{"message_timeout negative", Config{MessageTimeout: -time.Second}, "message_timeout"},
		{"gc_percent 200", Config{Runtime: Runtime{GCPercent: 200}}, ""},
		{"gc_percent -2", Config{Runtime: Runtime{GCPercent: -2}}, "runtime.gc_percent"},
		{"gc_percent off without a memory limit", Config{Runtime: Runtime{GCPercent: -1}}, "runtime.gc_percent"},
		{"gc_percent off with a memory limit", Config{Runtime: Runtime{GCPercent: -1, MemoryLimit: "2GiB"}}, ""},
		{"memory_limit bytes", Config{Runtime: Runtime{MemoryLimit: "1073741824"}}, ""},
		{"memory_limit MiB", Config{Runtime: Runtime{MemoryLimit: "1500MiB"}}, ""},
		{"memory_limit GB is not a unit", Config{Runtime: Runtime{MemoryLimit: "2GB"}}, "runtime.memory_limit"},
		{"memory_limit zero", Config{Runtime: Runtime{MemoryLimit: "0"}}, "runtime.memory_limit"},
		{"memory_limit overflows", Config{Runtime: Runtime{MemoryLimit: "9999999999TiB"}}, "runtime.memory_limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one naming %s", err, tc.err)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "512B": 512, "64KiB": 64 << 10, "1500MiB": 1500 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40, " 3 GiB ": 3 << 30,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// TestRuntimeKnobs: Start applies the runtime section unless GOGC or
// GOMEMLIMIT is set, and Close puts back what it changed.
func TestRuntimeKnobs(t *testing.T) {
	gcPercent := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	memLimit := func() int64 { return debug.SetMemoryLimit(-1) } // negative: read only
	origGC, origLimit := gcPercent(), memLimit()
	cfg := Config{Runtime: Runtime{GCPercent: 321, MemoryLimit: "7GiB"}}.withDefaults()

	t.Run("applied and restored", func(t *testing.T) {
		t.Setenv("GOGC", "")
		t.Setenv("GOMEMLIMIT", "")
		s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler)}
		s.applyRuntime()
		gotGC, gotLimit := gcPercent(), memLimit()
		s.restoreRuntime()
		if gotGC != 321 || gotLimit != 7<<30 {
			t.Errorf("applied gc_percent %d, memory_limit %d; want 321, %d", gotGC, gotLimit, int64(7<<30))
		}
		if gcPercent() != origGC || memLimit() != origLimit {
			t.Errorf("not restored: gc_percent %d, memory_limit %d; want %d, %d", gcPercent(), memLimit(), origGC, origLimit)
		}
	})
	t.Run("the environment wins", func(t *testing.T) {
		t.Setenv("GOGC", "150")
		t.Setenv("GOMEMLIMIT", "1GiB")
		s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler)}
		s.applyRuntime()
		defer s.restoreRuntime()
		if gcPercent() != origGC || memLimit() != origLimit {
			t.Errorf("changed despite GOGC/GOMEMLIMIT: gc_percent %d, memory_limit %d", gcPercent(), memLimit())
		}
	})
}

// TestLoadFileOverloadKeys: the YAML keys map onto the fields.
func TestLoadFileOverloadKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	yml := "max_queue_delay: 10ms\nruntime:\n  gc_percent: 400\n  memory_limit: 6GiB\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if c.MaxQueueDelay != 10*time.Millisecond || c.Runtime != (Runtime{GCPercent: 400, MemoryLimit: "6GiB"}) {
		t.Errorf("got max_queue_delay %s, runtime %+v", c.MaxQueueDelay, c.Runtime)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}
