package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
	"github.com/hlas-voip/hlas/ua"
)

// The proxy routing with RFC 3263 and ENUM against a DNS server on
// loopback (package resolvetest): SRV failover on a dead target and on
// 503, the blocklist that keeps later calls away from a failed target,
// weights among equal priorities, and an ENUM rule.

// startDNSProxy runs the server with routing and the DNS server at dns.
func startDNSProxy(t *testing.T, routing proxy.Config, dns string) *server.Server {
	t.Helper()
	return startServer(t, server.Config{Routing: routing,
		DNS: resolve.Config{Servers: []string{dns}, BlocklistFor: time.Minute}})
}

// blackhole is a UDP socket that reads and counts what it gets and never
// answers: a SIP server that is down without an ICMP error.
type blackhole struct {
	conn net.PacketConn
	n    atomic.Int64
	done chan struct{}
}

func newBlackhole(t *testing.T) *blackhole {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{conn: c, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			b.n.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close(); <-b.done })
	return b
}

func (b *blackhole) port() int { return b.conn.LocalAddr().(*net.UDPAddr).Port }

func port(ph *phone) int { return int(ph.Addr().Port()) }

const soa = "@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n"

// twoSRV is far.test with two UDP SRV targets on 127.0.0.1: priority 0 at
// port first, priority 1 at port second.
func twoSRV(first, second int) string {
	return fmt.Sprintf("$ORIGIN far.test.\n"+soa+
		"_sip._udp 60 IN SRV 0 10 %d sip1\n"+
		"_sip._udp 60 IN SRV 1 10 %d sip2\n"+
		"sip1 60 IN A 127.0.0.1\n"+
		"sip2 60 IN A 127.0.0.1\n", first, second)
}

func TestDNSRouting(t *testing.T) {
	ctx := context.Background()
	resolveRule := func(domain string) proxy.Config {
		return proxy.Config{Rules: []proxy.Rule{{Domain: domain, Action: proxy.ActionResolve}}}
	}

	t.Run("first SRV target down: timeout, the second answers, the next call avoids the first", func(t *testing.T) {
		dead := newBlackhole(t)
		bob := newPhone(t, "bob@far.test", "", answerAfter(0))
		dns := resolvetest.Start(t, twoSRV(dead.port(), port(bob)))
		s := startDNSProxy(t, resolveRule("far.test"), dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)

		call, err := alice.Call(ctx, "sip:bob@far.test")
		if err != nil {
			t.Fatal(err)
		}
		if dead.n.Load() == 0 {
			t.Error("the first target (priority 0) was never tried")
		}
		if n := metric(t, s, "hlas_dns_blocked_targets"); n != 1 {
			t.Errorf("%v targets blocked, want 1", n)
		}
		if err := call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob's first call to end", func() bool { return len(bob.endings()) == 1 })

		before := dead.n.Load()
		call, err = alice.Call(ctx, "sip:bob@far.test")
		if err != nil {
			t.Fatal(err)
		}
		_ = call.Hangup(ctx)
		waitFor(t, "bob's second call to end", func() bool { return len(bob.endings()) == 2 })
		if got := dead.n.Load(); got != before {
			t.Errorf("the failed target got %d more packets: the blocklist did not keep the call away", got-before)
		}
		closeAll(t, s, alice, bob)
	})

	t.Run("a rule timeout: a silent target is left before Timer B", func(t *testing.T) {
		dead := newBlackhole(t)
		bob := newPhone(t, "bob@far.test", "", answerAfter(0))
		dns := resolvetest.Start(t, twoSRV(dead.port(), port(bob)))
		s := startDNSProxy(t, proxy.Config{Rules: []proxy.Rule{
			{Domain: "far.test", Action: proxy.ActionResolve, Timeout: 300 * time.Millisecond}}}, dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		// Timer B is 64*T1 = 6.4 s here: a call that waited for it would
		// miss this deadline by far.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		call, err := alice.Call(cctx, "sip:bob@far.test")
		if err != nil {
			t.Fatal(err)
		}
		if dead.n.Load() == 0 {
			t.Error("the first target was never tried")
		}
		_ = call.Hangup(ctx)
		waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
		closeAll(t, s, alice, bob)
	})

	t.Run("503 from the first SRV target: the second answers, and takes the next call", func(t *testing.T) {
		busy := newPhone(t, "bob@far.test", "", reject(503))
		bob := newPhone(t, "bob@far.test", "", answerAfter(0))
		dns := resolvetest.Start(t, twoSRV(port(busy), port(bob)))
		s := startDNSProxy(t, resolveRule("far.test"), dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		for i := range 2 {
			call, err := alice.Call(ctx, "sip:bob@far.test")
			if err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
			_ = call.Hangup(ctx)
			waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == i+1 })
		}
		if n := len(busy.endings()); n != 1 {
			t.Errorf("the 503 target got %d calls, want 1 (then blocked)", n)
		}
		closeAll(t, s, alice, busy, bob)
	})

	t.Run("NAPTR to TCP, then UDP when TCP is refused", func(t *testing.T) {
		// Nothing listens on the TCP port: the connection is refused, a
		// transport error, and the UDP NAPTR record comes next.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		refused := l.Addr().(*net.TCPAddr).Port
		l.Close()
		bob := newPhone(t, "bob@far.test", "", answerAfter(0))
		dns := resolvetest.Start(t, fmt.Sprintf("$ORIGIN far.test.\n"+soa+
			"@ 60 IN NAPTR 10 10 \"s\" \"SIP+D2T\" \"\" _sip._tcp\n"+
			"@ 60 IN NAPTR 20 10 \"s\" \"SIP+D2U\" \"\" _sip._udp\n"+
			"_sip._tcp 60 IN SRV 0 10 %d sip1\n"+
			"_sip._udp 60 IN SRV 0 10 %d sip2\n"+
			"sip1 60 IN A 127.0.0.1\n"+
			"sip2 60 IN A 127.0.0.1\n", refused, port(bob)))
		s := startDNSProxy(t, resolveRule("far.test"), dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		call, err := alice.Call(ctx, "sip:bob@far.test")
		if err != nil {
			t.Fatal(err)
		}
		_ = call.Hangup(ctx)
		waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
		if n := metric(t, s, "hlas_dns_target_failures_total"); n != 1 {
			t.Errorf("%v target failures, want 1 (the refused TCP target)", n)
		}
		closeAll(t, s, alice, bob)
	})

	t.Run("weights among equal priorities share the requests", func(t *testing.T) {
		var mu sync.Mutex
		got := map[string]int{}
		count := func(name string) func(*sip.Request) {
			return func(*sip.Request) { mu.Lock(); got[name]++; mu.Unlock() }
		}
		light := newMessagePhone(t, count("light"))
		heavy := newMessagePhone(t, count("heavy"))
		dns := resolvetest.Start(t, fmt.Sprintf("$ORIGIN far.test.\n"+soa+
			"_sip._udp 60 IN SRV 0 1 %d light\n"+
			"_sip._udp 60 IN SRV 0 4 %d heavy\n"+
			"light 60 IN A 127.0.0.1\n"+
			"heavy 60 IN A 127.0.0.1\n", int(light.Addr().Port()), int(heavy.Addr().Port())))
		s := startDNSProxy(t, resolveRule("far.test"), dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		const n = 100
		for i := range n {
			if _, err := alice.Message(ctx, "sip:bob@far.test", "text/plain", []byte(fmt.Sprint(i))); err != nil {
				t.Fatalf("MESSAGE %d: %v", i, err)
			}
		}
		mu.Lock()
		l, h := got["light"], got["heavy"]
		mu.Unlock()
		// Weight 4 of 5: binomial(100, 0.8), mean 80, sd 4; 60..95 is
		// five standard deviations below and nearly four above.
		if l+h != n || h < 60 || h > 95 {
			t.Errorf("weight 1 got %d, weight 4 got %d of %d", l, h, n)
		}
		closeAll(t, s, alice, &phone{UA: light}, &phone{UA: heavy})
	})

	t.Run("no record is 404, a DNS that fails is 504 (RFC 3261 §21.5.5)", func(t *testing.T) {
		dns := resolvetest.Start(t, "$ORIGIN nowhere.test.\n"+soa+"$ORIGIN broken.test.\n"+soa)
		for _, name := range []string{"broken.test.", "_sip._udp.broken.test.", "_sip._tcp.broken.test.", "_sips._tcp.broken.test."} {
			dns.Rcode(name, 2) // SERVFAIL
		}
		s := startDNSProxy(t, proxy.Config{Rules: []proxy.Rule{
			{Domain: "nowhere.test", Action: proxy.ActionResolve},
			{Domain: "broken.test", Action: proxy.ActionResolve},
		}}, dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		if _, err := alice.Call(ctx, "sip:bob@nowhere.test"); statusCode(err) != 404 {
			t.Errorf("call to a domain without records: %v, want 404", err)
		}
		if _, err := alice.Call(ctx, "sip:bob@broken.test"); statusCode(err) != 504 {
			t.Errorf("call to a domain whose DNS fails: %v, want 504", err)
		}
		closeAll(t, s, alice)
	})
	t.Run("ENUM rule: the number's NAPTR gives the Request-URI; no record falls through", func(t *testing.T) {
		var mu sync.Mutex
		var uris []string
		bob := newPhone(t, "420224357628@cesnet.test", "", func(c *ua.Call) {
			mu.Lock()
			uris = append(uris, c.Request().URI.String())
			mu.Unlock()
			answerAfter(0)(c)
		})
		dns := resolvetest.Start(t, fmt.Sprintf("$ORIGIN 8.2.6.7.5.3.4.2.2.0.2.4.e164.arpa.\n"+
			"@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n"+
			"@ 60 IN NAPTR 10 100 \"u\" \"E2U+sip\" \"!^\\\\+(.*)$!sip:\\\\1@127.0.0.1:%d!\" .\n"+
			"$ORIGIN e164.arpa.\n"+
			"@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n", port(bob)))
		s := startDNSProxy(t, proxy.Config{Rules: []proxy.Rule{
			{Prefix: "+", Action: proxy.ActionENUM},
			{Prefix: "+", Action: proxy.ActionReject, Code: 404, Reason: "No ENUM Record"},
		}}, dns.Addr)
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		call, err := alice.Call(ctx, "sip:+420224357628@example.test")
		if err != nil {
			t.Fatal(err)
		}
		_ = call.Hangup(ctx)
		waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
		mu.Lock()
		if want := fmt.Sprintf("sip:420224357628@127.0.0.1:%d", port(bob)); len(uris) != 1 || uris[0] != want {
			t.Errorf("bob got the INVITE for %v, want %s", uris, want)
		}
		mu.Unlock()

		_, err = alice.Call(ctx, "sip:+420999999999@example.test")
		if code := statusCode(err); code != 404 || !strings.Contains(err.Error(), "No ENUM Record") {
			t.Errorf("number without a record: %v, want the next rule's 404", err)
		}
		closeAll(t, s, alice, bob)
	})
}

// A dead DNS server does not hold up the worker: with one worker, a call
// to a local user goes through while another call waits for the DNS.
func TestDNSLookupDoesNotBlockWorker(t *testing.T) {
	ctx := context.Background()
	dns := resolvetest.Start(t, "$ORIGIN slow.test.\n"+soa)
	for _, name := range []string{"slow.test.", "_sip._udp.slow.test.", "_sip._tcp.slow.test.", "_sips._tcp.slow.test."} {
		dns.Drop(name) // no answer: the resolver's timeout
	}
	bob := newPhone(t, "bob@example.test", "", answerAfter(0))
	s := startServer(t, server.Config{
		Listen:  []string{"udp:127.0.0.1:0"},
		Workers: 1,
		Routing: proxy.Config{
			Locations: map[string][]string{"bob@example.test": {contact(bob)}},
			Rules:     []proxy.Rule{{Domain: "slow.test", Action: proxy.ActionResolve}},
		},
		DNS: resolve.Config{Servers: []string{dns.Addr}, Timeout: 2 * time.Second, Attempts: 1},
	})
	alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
	slowDone := make(chan error, 1)
	go func() {
		_, err := alice.Call(ctx, "sip:carol@slow.test")
		slowDone <- err
	}()
	waitFor(t, "the DNS query of the slow call", func() bool { return dns.Queries("slow.test.", dnsTypeNAPTR) > 0 })
	call, err := alice.Call(ctx, "sip:bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	// Had the worker waited on the DNS, it would have answered the slow
	// call (504, no answer from the DNS) before it even saw this INVITE.
	if n := labeled(t, s, "hlas_proxy_final_responses_total", "class", "5xx"); n != 0 {
		t.Errorf("the slow call was answered before the local one got through: the worker waited on the DNS")
	}
	_ = call.Hangup(ctx)
	// RFC 3261 §21.5.5: the DNS did not answer in time, which is not 404.
	if err := <-slowDone; statusCode(err) != 504 {
		t.Errorf("the call to a domain without DNS answers: %v, want 504", err)
	}
	waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
	closeAll(t, s, alice, bob)
}

// A DNS server that has stopped answering is passed by once it has been
// silent three times in a row (RFC 2308 §7.2): calls that need it get 504
// without waiting for the DNS timeout, and the server is not asked again
// until dead_server_for is up.
func TestDNSOutageFailsFast(t *testing.T) {
	ctx := context.Background()
	dead := newBlackhole(t)
	s := startServer(t, server.Config{
		Listen:  []string{"udp:127.0.0.1:0"},
		Routing: proxy.Config{Rules: []proxy.Rule{{Domain: "*", Action: proxy.ActionResolve}}},
		DNS: resolve.Config{Servers: []string{fmt.Sprintf("127.0.0.1:%d", dead.port())},
			Timeout: 100 * time.Millisecond, Attempts: 1, DeadServerFor: time.Minute},
	})
	alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
	// The first call's NAPTR query and three SRV queries go unanswered.
	if _, err := alice.Call(ctx, "sip:bob@one.test"); statusCode(err) != 504 {
		t.Fatalf("call while the DNS is silent: %v, want 504", err)
	}
	if n := metric(t, s, "hlas_dns_dead_servers"); n != 1 {
		t.Fatalf("%v DNS servers deemed dead after four silent queries, want 1", n)
	}
	asked := dead.n.Load()
	for _, domain := range []string{"two.test", "three.test", "four.test"} {
		if _, err := alice.Call(ctx, "sip:bob@"+domain); statusCode(err) != 504 {
			t.Errorf("call to %s with the DNS deemed dead: %v, want 504", domain, err)
		}
	}
	if n := dead.n.Load() - asked; n != 0 {
		t.Errorf("the dead DNS server was asked %d more times", n)
	}
	closeAll(t, s, alice)
}

// dnsTypeNAPTR is dns.TypeNAPTR (RFC 3403).
const dnsTypeNAPTR = 35

// newMessagePhone is a UA that hands every MESSAGE it gets to got.
func newMessagePhone(t *testing.T, got func(*sip.Request)) *ua.UA {
	t.Helper()
	u, err := ua.New(ua.Config{User: "bob@far.test", T1: t1, OnMessage: got})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// metric reads a counter or gauge without labels from the server's registry.
func metric(t *testing.T, s *server.Server, name string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// labeled reads the counter name{label=value} from the server's registry;
// 0 when it has no such series yet.
func labeled(t *testing.T, s *server.Server, name, label, value string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
