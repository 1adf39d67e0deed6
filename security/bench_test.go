package security

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkBansBanned(b *testing.B) {
	ip := addr("198.51.100.77")
	b.Run("empty", func(b *testing.B) {
		bans := NewBans(BansConfig{})
		b.ReportAllocs()
		for b.Loop() {
			if bans.Banned(ip) {
				b.Fatal("banned")
			}
		}
	})
	full := NewBans(BansConfig{})
	exp := time.Now().Add(time.Hour)
	for i := 0; i < 1000; i++ {
		full.Add(Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32), Expires: exp})
	}
	full.Add(Ban{Prefix: prefix("172.16.0.0/12"), Manual: true})
	full.Add(Ban{Prefix: prefix("2001:db8:dead::/48"), Manual: true})
	b.Run("1000-miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if full.Banned(ip) {
				b.Fatal("banned")
			}
		}
	})
	b.Run("1000-hit", func(b *testing.B) {
		hit := addr("10.0.1.200")
		b.ReportAllocs()
		for b.Loop() {
			if !full.Banned(hit) {
				b.Fatal("not banned")
			}
		}
	})
	b.Run("1000-hit-wide", func(b *testing.B) {
		hit := addr("172.20.1.1")
		b.ReportAllocs()
		for b.Loop() {
			if !full.Banned(hit) {
				b.Fatal("not banned")
			}
		}
	})
}

func benchGuard(b *testing.B) *Guard {
	bans := NewBans(BansConfig{})
	trust := TrustFunc([]netip.Prefix{prefix("127.0.0.0/8"), prefix("::1/128")})
	// Limits no benchmark loop reaches: the source stays under them.
	g, err := NewGuard(FloodConfig{Packets: Limit{Rate: 1e9, Burst: 1e9}, Requests: Limit{Rate: 1e9, Burst: 1e9}}, bans, trust, nil)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

func BenchmarkGuardAllowPacket(b *testing.B) {
	b.Run("known", func(b *testing.B) {
		g := benchGuard(b)
		ip := addr("198.51.100.7")
		g.AllowPacket("udp", ip)
		b.ReportAllocs()
		for b.Loop() {
			if !g.AllowPacket("udp", ip) {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("known-at", func(b *testing.B) {
		g := benchGuard(b)
		ip := addr("198.51.100.7")
		now := time.Now()
		g.AllowPacketAt("udp", ip, now)
		b.ReportAllocs()
		for b.Loop() {
			if !g.AllowPacketAt("udp", ip, now) {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("known-ipv6", func(b *testing.B) {
		g := benchGuard(b)
		ip := addr("2001:db8:1:2::7")
		g.AllowPacket("udp", ip)
		b.ReportAllocs()
		for b.Loop() {
			if !g.AllowPacket("udp", ip) {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("banned", func(b *testing.B) {
		g := benchGuard(b)
		ip := addr("198.51.100.8")
		g.bans.Add(Ban{Prefix: prefix("198.51.100.8/32"), Expires: time.Now().Add(time.Hour)})
		b.ReportAllocs()
		for b.Loop() {
			if g.AllowPacket("udp", ip) {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("trusted", func(b *testing.B) {
		g := benchGuard(b)
		ip := addr("127.0.0.1")
		b.ReportAllocs()
		for b.Loop() {
			if !g.AllowPacket("udp", ip) {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		g := benchGuard(b)
		var n atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Each reader its own handful of sources, as UDP readers see.
			w := n.Add(1)
			var ips [16]netip.Addr
			for i := range ips {
				ips[i] = netip.AddrFrom4([4]byte{10, byte(w), byte(w >> 8), byte(i)})
				g.AllowPacket("udp", ips[i])
			}
			i := 0
			for pb.Next() {
				if !g.AllowPacket("udp", ips[i&15]) {
					b.Error("dropped")
					return
				}
				i++
			}
		})
	})
	b.Run("parallel-one-source", func(b *testing.B) {
		g := benchGuard(b)
		ip := addr("198.51.100.7")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !g.AllowPacket("udp", ip) {
					b.Error("dropped")
					return
				}
			}
		})
	})
}

func BenchmarkDetectorUserAgent(b *testing.B) {
	d, err := NewDetector(DetectConfig{}, NewBans(BansConfig{}), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ip := addr("198.51.100.7")
	for _, ua := range []string{
		"Yealink SIP-T46S 66.86.0.15",
		"Linphone-Desktop/5.2.6 (Ubuntu 24.04, Qt 5.15.13) LinphoneCore/5.3.72",
	} {
		b.Run(ua[:8], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d.UserAgent(ip, ua) {
					b.Fatal("banned")
				}
			}
		})
	}
}

func BenchmarkLimiterCall(b *testing.B) {
	t := time.Now()
	clock := func() time.Time { t = t.Add(time.Second); return t } // 60 calls a minute, 3600 an hour
	l, err := NewLimiter(LimitsConfig{ConcurrentCalls: 5, CallsPerMinute: 1000, Costly: []CostlyRule{{Prefixes: []string{"+1900", "00"}, PerHour: 1e4}}}, clock)
	if err != nil {
		b.Fatal(err)
	}
	ip := addr("198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		if code, _ := l.Call("alice", ip, "+1 900 123 456", 1); code != 0 {
			b.Fatal(code)
		}
	}
}
