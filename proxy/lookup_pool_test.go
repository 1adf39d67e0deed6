package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/ua"
)

// heldDNS is a DNS server whose answers wait until release is closed; it
// answers the seed's ENUM number with a NAPTR record to target, and every
// other name NXDOMAIN. asked gets a value per query received.
func heldDNS(t *testing.T, target string) (addr string, asked <-chan struct{}, release func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	q := make(chan struct{}, 16)
	const name = "8.2.6.7.5.3.4.2.2.0.2.4.e164.arpa."
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		select {
		case q <- struct{}{}:
		default:
		}
		<-held
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Name == name && r.Question[0].Qtype == dns.TypeNAPTR {
			rr, err := dns.NewRR(fmt.Sprintf(`%s 60 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!%s!" .`, name, target))
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	released := false
	release = func() {
		if !released {
			released = true
			close(held)
		}
	}
	t.Cleanup(func() { release(); _ = srv.Shutdown() })
	return pc.LocalAddr().String(), q, release
}

// An ENUM lookup that has to ask the DNS runs off the worker: with one
// worker, a call to a local user goes through while the ENUM lookup of
// another call waits on a slow DNS server. And a CANCEL that comes while
// the lookup runs ends the call: the number's target never sees the
// INVITE.
func TestENUMLookupOffTheWorker(t *testing.T) {
	ctx := context.Background()
	var invited atomic.Int32
	carol := newPhone(t, "carol@example.test", "", func(c *ua.Call) {
		invited.Add(1)
		answerAfter(0)(c)
	})
	local := newPhone(t, "bob@example.test", "", answerAfter(0))
	addr, asked, release := heldDNS(t, "sip:carol@"+carol.Addr().String())
	s := startServer(t, server.Config{
		Listen:  []string{"udp:127.0.0.1:0"},
		Workers: 1,
		Routing: proxy.Config{
			Locations: map[string][]string{"bob@example.test": {contact(local)}},
			Rules:     []proxy.Rule{{Prefix: "+", Action: proxy.ActionENUM}},
		},
		DNS: resolve.Config{Servers: []string{addr}, Timeout: 5 * time.Second, Attempts: 1},
	})
	alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)

	// The caller gives up while the lookup waits: CANCEL, 487.
	cctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	cancelled := make(chan error, 1)
	go func() {
		_, err := alice.Call(cctx, "sip:+420224357628@example.test")
		cancelled <- err
	}()
	<-asked
	// The worker is free: a local call goes through meanwhile.
	call, err := alice.Call(ctx, "sip:bob@example.test")
	if err != nil {
		t.Fatalf("local call while an ENUM lookup waits: %v", err)
	}
	_ = call.Hangup(ctx)
	// The CANCEL reaches the server while the lookup still waits. (Its
	// 487 may come from the transaction at once, or from the proxy once
	// the lookup ends, depending on whether the 100 Trying went first.)
	waitFor(t, "the CANCEL to reach the server", func() bool {
		return labeled(t, s, "hlas_server_messages_received_total", "method", "CANCEL") >= 1
	})
	time.Sleep(100 * time.Millisecond) // the worker handles the CANCEL it counted
	release()
	if err := <-cancelled; !errors.Is(err, context.DeadlineExceeded) || statusCode(err) != 487 {
		t.Fatalf("the cancelled call: %v, want the deadline and 487", err)
	}
	waitFor(t, "the ENUM lookup to end", func() bool {
		return labeled(t, s, "hlas_proxy_enum_lookups_total", "result", "hit") == 1
	})
	waitFor(t, "the cancelled call's context to end", func() bool { return metric(t, s, "hlas_proxy_contexts") == 0 })
	if n := invited.Load(); n != 0 {
		t.Fatalf("the ENUM target got %d INVITEs for a call cancelled during the lookup", n)
	}
	// Now cached: the next call is routed in place and reaches carol.
	call, err = alice.Call(ctx, "sip:+420224357628@example.test")
	if err != nil {
		t.Fatalf("call to the number once its record is cached: %v", err)
	}
	_ = call.Hangup(ctx)
	waitFor(t, "carol's call to end", func() bool { return len(carol.endings()) == 1 })
	if n := invited.Load(); n != 1 {
		t.Errorf("the ENUM target got %d INVITEs, want 1", n)
	}
	closeAll(t, s, alice, local, carol)
}

// The stateless mode looks up a next hop that needs the DNS off the
// worker too: with one worker, a call to a local user goes through while
// a request to a domain waits on a slow DNS server.
func TestStatelessLookupOffTheWorker(t *testing.T) {
	ctx := context.Background()
	local := newPhone(t, "bob@example.test", "", answerAfter(0))
	addr, asked, release := heldDNS(t, "sip:nobody@192.0.2.1")
	s := startServer(t, server.Config{
		Listen:  []string{"udp:127.0.0.1:0"},
		Workers: 1,
		Routing: proxy.Config{
			Mode:      proxy.Stateless,
			Locations: map[string][]string{"bob@example.test": {contact(local)}},
			Rules:     []proxy.Rule{{Domain: "slow.test", Action: proxy.ActionResolve}},
		},
		DNS: resolve.Config{Servers: []string{addr}, Timeout: 5 * time.Second, Attempts: 1},
	})
	alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
	slow := make(chan error, 1)
	go func() {
		_, err := alice.Call(ctx, "sip:carol@slow.test")
		slow <- err
	}()
	<-asked
	call, err := alice.Call(ctx, "sip:bob@example.test")
	if err != nil {
		t.Fatalf("local call while a stateless lookup waits: %v", err)
	}
	_ = call.Hangup(ctx)
	release()
	if err := <-slow; statusCode(err) != 404 {
		t.Errorf("request to a domain without records: %v, want 404", err)
	}
	closeAll(t, s, alice, local)
}
