package server

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// stunExchange sends a Binding request (with FINGERPRINT) from a fresh
// socket and returns the answer's XOR-MAPPED-ADDRESS and the client's own
// address, or ok false when nothing arrives within wait.
func stunExchange(t *testing.T, to netip.AddrPort, wait time.Duration) (mapped, client netip.AddrPort, ok bool) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	if from.Addr().Unmap() != to.Addr() || from.Port() != to.Port() {
		t.Fatalf("answer from %s, want from %s (the socket the request went to)", from, to)
	}
	res := new(stun.Message)
	if err := stun.Decode(buf[:n], res); err != nil {
		t.Fatalf("answer %x: %v", buf[:n], err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("answer %s, want a Binding success for transaction %x", res, req.TransactionID)
	}
	if err := stun.Fingerprint.Check(res); err != nil {
		t.Fatalf("answer FINGERPRINT: %v", err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(res); err != nil {
		t.Fatalf("XOR-MAPPED-ADDRESS: %v", err)
	}
	ip, _ := netip.AddrFromSlice(xa.IP)
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port)), netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), true
}

// stunCount reads hlas_stun_requests_total{result} from the server's
// registry, as a scrape would.
func stunCount(t *testing.T, srv *Server, result string) float64 {
	t.Helper()
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "hlas_stun_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no hlas_stun_requests_total{result=%q}", result)
	return 0
}

// TestSTUNOnSIPAndDedicatedPorts checks that the server answers Binding
// requests (RFC 8489) on its SIP UDP ports, told apart from SIP (RFC 7983
// §7), and on its dedicated STUN sockets, IPv4 and IPv6, and still
// answers SIP on the shared port.
func TestSTUNOnSIPAndDedicatedPorts(t *testing.T) {
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0", "udp:[::1]:0"}})
	dedicated := srv.STUNAddrs()
	if len(dedicated) != 2 {
		t.Fatalf("dedicated STUN sockets %v, want one per UDP SIP listener's host", dedicated)
	}
	targets := map[string]netip.AddrPort{
		"SIP UDP IPv4": srv.addr(t, "UDP", false),
		"SIP UDP IPv6": srv.addr(t, "UDP", true),
	}
	for _, a := range dedicated {
		if a.Port() == 0 || a == srv.addr(t, "UDP", a.Addr().Is6()) {
			t.Fatalf("dedicated STUN socket %s", a)
		}
		targets["STUN "+a.String()] = a
	}
	for name, to := range targets {
		t.Run(name, func(t *testing.T) {
			mapped, client, ok := stunExchange(t, to, 5*time.Second)
			if !ok {
				t.Fatal("no answer")
			}
			if mapped != client {
				t.Fatalf("XOR-MAPPED-ADDRESS %s, want the client's %s", mapped, client)
			}
		})
	}
	if got := stunCount(t, srv, "answered"); got != float64(len(targets)) {
		t.Errorf("hlas_stun_requests_total{result=answered} = %v, want %d", got, len(targets))
	}
	// SIP on the shared port is untouched.
	a := srv.addr(t, "UDP", false)
	if res := udpExchange(t, a, request("OPTIONS", "sip:"+a.String(), "client.invalid", ""), 5*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS on the SIP port shared with STUN: %v", res)
	}
	wantDropped(t, srv, "unparsable", 0)
}

// TestSTUNRateLimit checks that a source over stun.rate gets no answer and
// is counted.
func TestSTUNRateLimit(t *testing.T) {
	// A rate so low that no token comes back during the test.
	srv := startServer(t, Config{STUN: STUNConfig{Rate: 0.001, Burst: 2}})
	to := srv.addr(t, "UDP", false)
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 5 {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
			t.Fatal(err)
		}
	}
	// The same source on the dedicated port shares the budget.
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.WriteToUDPAddrPort(req.Raw, srv.STUNAddrs()[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // failsafe, not a threshold
	for stunCount(t, srv, "answered")+stunCount(t, srv, "rate_limited") < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a, r := stunCount(t, srv, "answered"), stunCount(t, srv, "rate_limited"); a != 2 || r != 4 {
		t.Fatalf("answered %v, rate_limited %v; want 2 and 4", a, r)
	}
	buf := make([]byte, 1500)
	answers := 0
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		answers++
	}
	if answers != 2 {
		t.Fatalf("%d answers received, want 2", answers)
	}
}

// TestSTUNOff checks enabled: false and on_sip_ports: false.
func TestSTUNOff(t *testing.T) {
	off := false
	t.Run("enabled false", func(t *testing.T) {
		srv := startServer(t, Config{STUN: STUNConfig{Enabled: &off}})
		if got := srv.STUNAddrs(); len(got) != 0 {
			t.Fatalf("dedicated STUN sockets %v with STUN off", got)
		}
		if _, _, ok := stunExchange(t, srv.addr(t, "UDP", false), 300*time.Millisecond); ok {
			t.Fatal("STUN answered on the SIP port with STUN off")
		}
		if n, err := testutil.GatherAndCount(srv.Registry(), "hlas_stun_requests_total"); err != nil || n != 0 {
			t.Errorf("%d series of hlas_stun_requests_total with STUN off (%v)", n, err)
		}
	})
	t.Run("on_sip_ports false", func(t *testing.T) {
		srv := startServer(t, Config{STUN: STUNConfig{OnSIPPorts: &off}})
		if _, _, ok := stunExchange(t, srv.addr(t, "UDP", false), 300*time.Millisecond); ok {
			t.Fatal("STUN answered on the SIP port with on_sip_ports false")
		}
		if _, _, ok := stunExchange(t, srv.STUNAddrs()[0], 5*time.Second); !ok {
			t.Fatal("no answer on the dedicated STUN socket")
		}
	})
	t.Run("listen none", func(t *testing.T) {
		srv := startServer(t, Config{STUN: STUNConfig{Listen: []string{"none"}}})
		if got := srv.STUNAddrs(); len(got) != 0 {
			t.Fatalf("dedicated STUN sockets %v with listen [none]", got)
		}
		if _, _, ok := stunExchange(t, srv.addr(t, "UDP", false), 5*time.Second); !ok {
			t.Fatal("no answer on the SIP port")
		}
	})
}

// syncBuffer is a log sink for a server's logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSTUNPortTaken checks that a default STUN socket whose port is taken
// (another hlas on the host, say) is skipped with a warning, while an
// explicitly configured one that cannot be bound stops the start.
func TestSTUNPortTaken(t *testing.T) {
	// Hold port 3478 on 127.0.0.1, unless something else already does:
	// either way it is taken.
	if hold, err := net.ListenPacket("udp4", "127.0.0.1:3478"); err == nil {
		defer hold.Close()
	}
	sipPort := freeUDPPort(t)
	var logs syncBuffer
	cfg := Config{Listen: []string{"udp:127.0.0.1:" + sipPort}, DataDir: t.TempDir(), DNS: testDNS(t)}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatalf("a taken default STUN port stopped the start: %v", err)
	}
	if got := srv.STUNAddrs(); len(got) != 0 {
		t.Fatalf("dedicated STUN sockets %v on a taken port", got)
	}
	if !strings.Contains(logs.String(), "default STUN listener not opened") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	if _, _, ok := stunExchange(t, srv.addr(t, "UDP", false), 5*time.Second); !ok {
		t.Fatal("no STUN answer on the SIP port")
	}
	srv.Close()

	cfg.STUN.Listen = []string{"udp:127.0.0.1:3478"}
	explicit, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer explicit.Close()
	if err := explicit.Start(); err == nil || !strings.Contains(err.Error(), "stun.listen") {
		t.Fatalf("Start with a taken explicit stun.listen: %v, want an error naming stun.listen", err)
	}
}

func freeUDPPort(t *testing.T) string {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return port
}

func TestSTUNListeners(t *testing.T) {
	ls := func(entries ...string) []Listener {
		var out []Listener
		for _, e := range entries {
			l, err := ParseListener(e)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
		return out
	}
	tests := []struct {
		name     string
		listen   []string
		sip      []Listener
		want     []string
		explicit bool
	}{
		{"default", nil, ls("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"), []string{"0.0.0.0:3478"}, false},
		{"one per host", nil, ls("udp:192.0.2.1:5060", "udp:192.0.2.1:5070", "udp:[2001:db8::1]:5060"), []string{"192.0.2.1:3478", "[2001:db8::1]:3478"}, false},
		{"wildcard covers its family", nil, ls("udp:192.0.2.1:5060", "udp:0.0.0.0:5070", "udp:[::1]:5060"), []string{"0.0.0.0:3478", "[::1]:3478"}, false},
		{"ephemeral SIP port, ephemeral STUN port", nil, ls("udp:127.0.0.1:0"), []string{"127.0.0.1:0"}, false},
		{"SIP already on 3478", nil, ls("udp:192.0.2.1:3478"), nil, false},
		{"no UDP SIP listener", nil, ls("tcp:0.0.0.0:5060"), nil, false},
		{"explicit", []string{"udp:192.0.2.9:3479", "udp:[::]:3478"}, ls("udp:0.0.0.0:5060"), []string{"192.0.2.9:3479", "[::]:3478"}, true},
		{"explicit, comma-separated", []string{"udp:192.0.2.9:3479, udp:192.0.2.9:3480"}, nil, []string{"192.0.2.9:3479", "192.0.2.9:3480"}, true},
		{"none", []string{"none"}, ls("udp:0.0.0.0:5060"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, explicit, err := STUNConfig{Listen: tt.listen}.listeners(tt.sip)
			if err != nil || explicit != tt.explicit || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("listeners = %q, %v, %v; want %q, %v", got, explicit, err, tt.want, tt.explicit)
			}
		})
	}
}

func TestSTUNConfigValidate(t *testing.T) {
	for _, c := range []STUNConfig{
		{Rate: -1},
		{Burst: -2},
		{Listen: []string{"tcp:127.0.0.1:3478"}},
		{Listen: []string{"udp:localhost:3478"}},
		{Listen: []string{"none", "udp:127.0.0.1:3478"}},
	} {
		err := Config{STUN: c}.Validate()
		if err == nil || !strings.Contains(err.Error(), "stun.") {
			t.Errorf("Validate(%+v) = %v, want an error naming the stun field", c, err)
		}
	}
	if err := (Config{STUN: STUNConfig{Rate: 50, Burst: 100, Listen: []string{"udp:[::]:3478"}}}).Validate(); err != nil {
		t.Errorf("valid STUN config: %v", err)
	}
}
