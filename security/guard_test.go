package security

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestGuard(t *testing.T, clk *fakeClock, cfg FloodConfig, trusted func(netip.Addr) bool) (*Guard, *Bans, *recorder) {
	t.Helper()
	bans, rec := newTestBans(clk, 0)
	g, err := NewGuard(cfg, bans, trusted, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return g, bans, rec
}

func TestGuardBansOverPacketLimit(t *testing.T) {
	clk := newClock()
	g, bans, rec := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 10, Burst: 5}}, nil)
	ip := addr("198.51.100.7")
	for i := 0; i < 5; i++ {
		if !g.AllowPacket("udp", ip) {
			t.Fatalf("packet %d within the burst dropped", i+1)
		}
	}
	if g.AllowPacket("udp", ip) {
		t.Fatal("packet over the burst allowed")
	}
	if !bans.Banned(ip) {
		t.Fatal("source over its limit not banned")
	}
	if len(rec.added) != 1 {
		t.Fatalf("%d bans reported, want 1", len(rec.added))
	}
	ban := rec.added[0]
	if ban.Prefix != prefix("198.51.100.7/32") || !strings.HasPrefix(ban.Reason, "flood: 6 packets/s over udp") ||
		!strings.Contains(ban.Reason, "limit 10/s, burst 5") || !ban.Expires.Equal(clk.Now().Add(DefaultFloodBanTime)) || ban.Kind() != "flood" {
		t.Fatalf("ban = %+v", ban)
	}
	// Banned: dropped whatever the bucket says, and counted.
	clk.Add(time.Minute)
	if g.AllowPacket("udp", ip) || g.AllowRequest("tcp", ip) {
		t.Fatal("banned source allowed")
	}
	st := g.Stats()
	if st.DroppedFlood != 1 || st.DroppedBanned != 2 || st.BansPackets != 1 || st.BansRequests != 0 || st.Sources != 0 {
		t.Fatalf("stats = %+v", st)
	}
	// When the ban lapses the source starts with a full bucket.
	clk.Add(DefaultFloodBanTime)
	for i := 0; i < 5; i++ {
		if !g.AllowPacket("udp", ip) {
			t.Fatalf("packet %d after the ban dropped", i+1)
		}
	}
	// Lifting a ban by hand lets the source in at once.
	g.AllowPacket("udp", ip)
	if !bans.Del(prefix("198.51.100.7/32")) || !g.AllowPacket("udp", ip) {
		t.Fatal("source still dropped after its ban was lifted")
	}
}

func TestGuardRefills(t *testing.T) {
	clk := newClock()
	g, bans, _ := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 10, Burst: 2}}, nil)
	ip := addr("198.51.100.7")
	// 10/s sustained for 10 seconds, in steps of 100ms: never over.
	for i := 0; i < 100; i++ {
		if !g.AllowPacket("udp", ip) {
			t.Fatalf("packet %d at the sustained rate dropped", i)
		}
		clk.Add(100 * time.Millisecond)
	}
	// Twice the rate: the burst goes, then the source is banned.
	dropped := -1
	for i := 0; i < 10; i++ {
		if !g.AllowPacket("udp", ip) {
			dropped = i
			break
		}
		clk.Add(50 * time.Millisecond)
	}
	if dropped < 0 || !bans.Banned(ip) {
		t.Fatal("source at twice the rate not banned")
	}
}

func TestGuardRequests(t *testing.T) {
	clk := newClock()
	g, bans, rec := newTestGuard(t, clk, FloodConfig{Requests: Limit{Rate: 1, Burst: 3}}, nil)
	ip := addr("198.51.100.8")
	for i := 0; i < 3; i++ {
		if !g.AllowPacket("tcp", ip) || !g.AllowRequest("tcp", ip) {
			t.Fatalf("request %d dropped", i+1)
		}
	}
	if !g.AllowPacket("tcp", ip) {
		t.Fatal("packet dropped: the packet bucket is not spent")
	}
	if g.AllowRequest("tcp", ip) || !bans.Banned(ip) {
		t.Fatal("request over the limit allowed")
	}
	if !strings.Contains(rec.added[0].Reason, "requests/s over tcp") || g.Stats().BansRequests != 1 {
		t.Fatalf("reason %q, stats %+v", rec.added[0].Reason, g.Stats())
	}
}

func TestGuardTrusted(t *testing.T) {
	clk := newClock()
	trust := TrustFunc([]netip.Prefix{prefix("10.0.0.0/8"), prefix("2001:db8::/32")})
	g, bans, _ := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 1, Burst: 1}}, trust)
	for _, s := range []string{"10.1.2.3", "::ffff:10.1.2.3", "2001:db8:1::5"} {
		for i := 0; i < 100; i++ {
			if !g.AllowPacket("udp", addr(s)) || !g.AllowRequest("udp", addr(s)) {
				t.Fatalf("trusted %s dropped", s)
			}
		}
	}
	// Not even a manual ban stops a trusted source.
	bans.Add(Ban{Prefix: prefix("10.0.0.0/16"), Manual: true})
	if !g.AllowPacket("udp", addr("10.0.0.1")) {
		t.Fatal("trusted source dropped for a ban")
	}
	if st := g.Stats(); st.Sources != 0 || st.DroppedBanned != 0 || st.DroppedFlood != 0 {
		t.Fatalf("trusted sources tracked: %+v", st)
	}
}

func TestGuardIPv6PerSlash64(t *testing.T) {
	clk := newClock()
	g, bans, rec := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 1, Burst: 4}}, nil)
	// Four addresses of one /64 share a bucket...
	for i := 1; i <= 4; i++ {
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, byte(i)})
		if !g.AllowPacket("udp", ip) {
			t.Fatalf("packet from %s dropped", ip)
		}
	}
	if g.AllowPacket("udp", addr("2001:db8:0:1:abcd::99")) {
		t.Fatal("fifth packet from the /64 allowed")
	}
	if rec.added[0].Prefix != prefix("2001:db8:0:1::/64") {
		t.Fatalf("banned %s, want the /64", rec.added[0].Prefix)
	}
	// ...the next /64 is someone else.
	if !g.AllowPacket("udp", addr("2001:db8:0:2::1")) || bans.Banned(addr("2001:db8:0:2::1")) {
		t.Fatal("neighbouring /64 dropped")
	}
}

func TestGuardPerTransport(t *testing.T) {
	clk := newClock()
	g, _, _ := newTestGuard(t, clk, FloodConfig{
		Packets: Limit{Rate: 1, Burst: 5},
		PerTransport: map[string]FloodLimits{
			"UDP": {Packets: Limit{Burst: 2}},
			"ws":  {Packets: Limit{Rate: 1, Burst: 8}},
		},
	}, nil)
	count := func(proto string, ip netip.Addr) int {
		n := 0
		for g.AllowPacket(proto, ip) {
			n++
			if n > 100 {
				break
			}
		}
		return n
	}
	for _, tc := range []struct {
		proto string
		ip    string
		want  int
	}{
		{"udp", "192.0.2.1", 2},
		{"tcp", "192.0.2.2", 5},
		{"ws", "192.0.2.3", 8},
		{"sctp", "192.0.2.4", 5}, // unknown: the general limits
	} {
		if got := count(tc.proto, addr(tc.ip)); got != tc.want {
			t.Errorf("%s: %d packets allowed, want %d", tc.proto, got, tc.want)
		}
	}
	// Each transport of one source has its own bucket.
	ip := addr("192.0.2.9")
	for i := 0; i < 2; i++ {
		g.AllowPacket("udp", ip)
		g.AllowPacket("tcp", ip)
	}
	if g.Stats().Sources != 2 {
		t.Fatalf("Sources = %d, want 2 (udp and tcp of one address)", g.Stats().Sources)
	}
}

func TestGuardBoundedSources(t *testing.T) {
	clk := newClock()
	g, _, _ := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 10, Burst: 5}, MaxSources: 3}, nil)
	for i := 1; i <= 10; i++ {
		if !g.AllowPacket("udp", netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})) {
			t.Fatalf("source %d dropped", i)
		}
	}
	st := g.Stats()
	if st.Sources != 3 || st.Untracked != 7 {
		t.Fatalf("stats = %+v, want 3 sources, 7 untracked", st)
	}
	// Untracked sources are not limited, but once the tracked ones have
	// gone quiet (their buckets full again) room is made.
	clk.Add(time.Duration(guardFullSweepEvery))
	if !g.AllowPacket("udp", addr("192.0.2.100")) {
		t.Fatal("dropped")
	}
	clk.Add(time.Second)
	g.AllowPacket("udp", addr("192.0.2.101"))
	if st := g.Stats(); st.Sources != 1 {
		t.Fatalf("after the quiet ones were reclaimed: %+v, want 1 source", st)
	}
}

func TestGuardReclaimsIdle(t *testing.T) {
	clk := newClock()
	g, _, _ := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 10, Burst: 5}}, nil)
	for i := 0; i < 1000; i++ {
		g.AllowPacket("udp", netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	busy := addr("192.0.2.1")
	for i := 0; i < 5; i++ {
		g.AllowPacket("udp", busy)
	}
	if n := g.Stats().Sources; n != 1001 {
		t.Fatalf("Sources = %d", n)
	}
	// 100ms later the one-packet sources are full again; the busy one,
	// which spent its whole burst, is not.
	clk.Add(100 * time.Millisecond)
	if n := g.Sweep(clk.Now()); n != 1000 {
		t.Fatalf("Sweep reclaimed %d, want 1000", n)
	}
	if n := g.Stats().Sources; n != 1 {
		t.Fatalf("Sources after Sweep = %d, want 1", n)
	}
	// Without an explicit Sweep, the calling path sweeps every
	// guardSweepEvery.
	for i := 0; i < 1000; i++ {
		g.AllowPacket("udp", netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}))
	}
	clk.Add(time.Duration(guardSweepEvery))
	for i := 0; i < 3000; i++ {
		g.AllowPacket("udp", netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)}))
	}
	if n := g.Stats().Sources; n >= 4000 {
		t.Fatalf("Sources = %d: nothing reclaimed on the calling path", n)
	}
}

func TestGuardDisabled(t *testing.T) {
	clk := newClock()
	off := false
	g, bans, _ := newTestGuard(t, clk, FloodConfig{Enabled: &off, Packets: Limit{Rate: 1, Burst: 1}}, nil)
	ip := addr("192.0.2.1")
	for i := 0; i < 100; i++ {
		if !g.AllowPacket("udp", ip) {
			t.Fatal("disabled guard dropped a packet")
		}
	}
	bans.Add(Ban{Prefix: prefix("192.0.2.1/32"), Manual: true})
	if g.AllowPacket("udp", ip) {
		t.Fatal("disabled guard let a banned source through")
	}
}

func TestGuardAt(t *testing.T) {
	clk := newClock()
	g, _, _ := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 1, Burst: 1}, Requests: Limit{Rate: 1, Burst: 1}}, nil)
	ip := addr("192.0.2.1")
	t0 := clk.Now()
	// The clock is not read: the times given decide.
	if !g.AllowPacketAt("udp", ip, t0) || !g.AllowPacketAt("udp", ip, t0.Add(time.Second)) || !g.AllowRequestAt("udp", ip, t0.Add(time.Second)) {
		t.Fatal("packets a second apart dropped")
	}
	if g.AllowRequestAt("udp", ip, t0.Add(time.Second+time.Millisecond)) {
		t.Fatal("second request within a millisecond allowed")
	}
}

func TestGuardConcurrent(t *testing.T) {
	clk := newClock()
	g, bans, _ := newTestGuard(t, clk, FloodConfig{Packets: Limit{Rate: 1000, Burst: 100}, MaxSources: 500}, nil)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				ip := netip.AddrFrom4([4]byte{10, byte(w), 0, byte(i % 300)})
				g.AllowPacket("udp", ip)
				g.AllowRequest("tcp", ip)
				if i%500 == 0 {
					g.Sweep(clk.Now())
					clk.Add(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	st := g.Stats()
	if st.Sources > 500 || st.Sources < 0 {
		t.Fatalf("Sources = %d, bound 500", st.Sources)
	}
	n := 0
	for i := range g.shards {
		n += len(g.shards[i].m)
	}
	if n != st.Sources {
		t.Fatalf("count %d, table %d", st.Sources, n)
	}
	_ = bans
}

func TestNewGuardErrors(t *testing.T) {
	bans := NewBans(BansConfig{})
	if _, err := NewGuard(FloodConfig{Packets: Limit{Rate: -1}}, bans, nil, nil); err == nil || !strings.Contains(err.Error(), "security.flood.packets.rate") {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewGuard(FloodConfig{}, nil, nil, nil); err == nil {
		t.Fatal("NewGuard without Bans")
	}
}
