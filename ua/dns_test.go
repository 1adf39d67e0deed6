package ua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

// RFC 3263 in the user agent: next hops from NAPTR/SRV records on a DNS
// server on loopback, and failover (§4.3) from a target that times out,
// refuses the connection or answers 503, to the next one.

// deadUDP is a socket that swallows what it gets: a server that is down
// without an ICMP error.
func deadUDP(t *testing.T) (port int, got *atomic.Int64) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).Port, got
}

// refusedTCP returns a TCP port nothing listens on.
func refusedTCP(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestDNSFailover(t *testing.T) {
	const fast = 20 * time.Millisecond // Timer B/F: 64*T1 = 1.28s
	var dns *resolve.Resolver          // the last one withDNS made
	withDNS := func(srv *resolvetest.Server) func(*Config) {
		return func(c *Config) {
			r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}})
			if err != nil {
				t.Fatal(err)
			}
			dns = r
			c.DNS = r
			c.T1 = fast
		}
	}
	zone := func(first string, port1, port2 int) string {
		return fmt.Sprintf("$ORIGIN far.test.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n"+
			"%s 60 IN SRV 0 10 %d sip1\n"+
			"_sip._udp 60 IN SRV 1 10 %d sip2\n"+
			"sip1 60 IN A 127.0.0.1\n"+
			"sip2 60 IN A 127.0.0.1\n", first, port1, port2)
	}

	t.Run("INVITE: the first SRV target times out, the second answers", func(t *testing.T) {
		dead, got := deadUDP(t)
		bob := newPeer(t, "udp", "bob", nil, func(c *Config) { c.T1 = fast })
		defer bob.Close()
		srv := resolvetest.Start(t, zone("_sip._udp", dead, int(bob.Addr().Port())))
		alice := newPeer(t, "udp", "alice", nil, withDNS(srv))
		defer alice.Close()
		go func() {
			c := nextCall(t, bob)
			_ = c.Answer(context.Background())
		}()
		call, err := alice.Call(context.Background(), "sip:bob@far.test")
		if err != nil {
			t.Fatal(err)
		}
		if got.Load() == 0 {
			t.Error("the priority-0 target was never tried")
		}
		if err := call.Hangup(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := dns.Stats(); st.TargetFailures != 1 || st.Blocked != 1 {
			t.Errorf("resolver stats %+v, want one failure, one target blocked", st)
		}
	})

	t.Run("MESSAGE: the TCP target refuses, the UDP one takes it", func(t *testing.T) {
		bob := newPeer(t, "udp", "bob", nil, func(c *Config) { c.T1 = fast })
		defer bob.Close()
		srv := resolvetest.Start(t, zone("_sip._tcp", refusedTCP(t), int(bob.Addr().Port()))+
			"@ 60 IN NAPTR 10 10 \"s\" \"SIP+D2T\" \"\" _sip._tcp\n"+
			"@ 60 IN NAPTR 20 10 \"s\" \"SIP+D2U\" \"\" _sip._udp\n")
		alice := newPeer(t, "udp", "alice", nil, withDNS(srv))
		defer alice.Close()
		if _, err := alice.Message(context.Background(), "sip:bob@far.test", "text/plain", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if m := bob.seen(&bob.messages); len(m) != 1 || m[0] != "hi" {
			t.Errorf("bob got %q", m)
		}
	})

	t.Run("INVITE: 503 from the first target, the second answers", func(t *testing.T) {
		busy := newPeer(t, "udp", "bob", nil, func(c *Config) { c.T1 = fast })
		defer busy.Close()
		bob := newPeer(t, "udp", "bob", nil, func(c *Config) { c.T1 = fast })
		defer bob.Close()
		srv := resolvetest.Start(t, zone("_sip._udp", int(busy.Addr().Port()), int(bob.Addr().Port())))
		alice := newPeer(t, "udp", "alice", nil, withDNS(srv))
		defer alice.Close()
		go func() { _ = nextCall(t, busy).Reject(503, "") }()
		go func() { _ = nextCall(t, bob).Answer(context.Background()) }()
		call, err := alice.Call(context.Background(), "sip:bob@far.test")
		if err != nil {
			t.Fatal(err)
		}
		_ = call.Hangup(context.Background())
		if r := alice.seen(&alice.responses); len(r) < 2 || r[0] != "INVITE 503" {
			t.Errorf("alice saw %v, want a 503 first", r)
		}
	})

	t.Run("every target fails: the caller gets the last failure", func(t *testing.T) {
		// No NAPTR: _sip._udp (the 503) comes before _sip._tcp (refused).
		busy := newPeer(t, "udp", "bob", nil, func(c *Config) { c.T1 = fast })
		defer busy.Close()
		srv := resolvetest.Start(t, zone("_sip._tcp", refusedTCP(t), int(busy.Addr().Port())))
		alice := newPeer(t, "udp", "alice", nil, withDNS(srv))
		defer alice.Close()
		go func() { _ = nextCall(t, busy).Reject(503, "") }()
		_, err := alice.Call(context.Background(), "sip:bob@far.test")
		if !errors.Is(err, ErrTransport) {
			t.Errorf("got %v, want the transport error of the last target", err)
		}
		if r := alice.seen(&alice.responses); len(r) != 1 || r[0] != "INVITE 503" {
			t.Errorf("alice saw %v, want the 503 of the first target", r)
		}
	})
}

// fakeAddrs is a system resolver that knows one name.
type fakeAddrs struct {
	name string
	addr netip.Addr
}

func (f fakeAddrs) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host == f.name {
		return []netip.Addr{f.addr}, nil
	}
	return nil, errors.New("no such host")
}

// A DNS server that does not answer: the lookup gives up after
// ResolveTimeout and the system resolver (here a fake one) still finds the
// host, so the request goes out.
func TestDNSServerDeadFallsBackToSystemResolver(t *testing.T) {
	deadDNS, asked := deadUDP(t)
	bob := newPeer(t, "udp", "bob", nil, nil)
	defer bob.Close()
	alice := newPeer(t, "udp", "alice", nil, func(c *Config) {
		r, err := resolve.New(resolve.Config{Servers: []string{fmt.Sprintf("127.0.0.1:%d", deadDNS)}, HostsFile: resolve.HostsNone})
		if err != nil {
			t.Fatal(err)
		}
		c.DNS = r
		c.ResolveTimeout = 300 * time.Millisecond
		c.Resolver = fakeAddrs{name: "bob.far.test", addr: netip.MustParseAddr("127.0.0.1")}
	})
	defer alice.Close()
	uri := fmt.Sprintf("sip:bob@bob.far.test:%d", bob.Addr().Port())
	if _, err := alice.Message(context.Background(), uri, "text/plain", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if asked.Load() == 0 {
		t.Error("the DNS server was never asked")
	}
	if m := bob.seen(&bob.messages); len(m) != 1 || m[0] != "hi" {
		t.Errorf("bob got %q", m)
	}
}
