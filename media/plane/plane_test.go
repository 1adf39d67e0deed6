package plane

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func ap(s string) netip.AddrPort {
	if s == "" {
		return netip.AddrPort{}
	}
	return netip.MustParseAddrPort(s)
}

// The latching rules, RFC 7362 §4 with the hijack protections of §3.
func TestFlowAccept(t *testing.T) {
	const w = int64(3 * time.Second)
	const (
		open   = int64(time.Second)     // inside a window that ends at w
		closed = int64(5 * time.Second) // after it
	)
	pub, priv := "203.0.113.5:4000", "192.168.1.5:4000"
	nat, nat2 := "198.51.100.7:61000", "198.51.100.7:62000"
	other := "198.51.100.66:5000"
	tests := []struct {
		name                string
		latched, sig, src   string
		otherFlow           string // IP the leg's other flow is latched on
		until, now          int64
		ok, moved           bool
		wantSrc             string
		wantUntilAfterwards int64
	}{
		{name: "latched source", latched: nat, sig: priv, src: nat, until: w, now: closed, ok: true, wantSrc: nat},
		{name: "first packet in the window latches", sig: priv, src: nat, until: w, now: open, ok: true, moved: true, wantSrc: nat},
		{name: "first packet without a window opens one", sig: priv, src: nat, now: closed, ok: true, moved: true, wantSrc: nat, wantUntilAfterwards: closed + w},
		{name: "first packet before any SetPeer", src: nat, now: open, ok: true, moved: true, wantSrc: nat, wantUntilAfterwards: open + w},
		{name: "late first packet from the other flow's host", sig: priv, src: nat2, otherFlow: "198.51.100.7", until: w, now: closed, ok: true, moved: true, wantSrc: nat2, wantUntilAfterwards: closed + w},
		{name: "late first packet from another host", sig: priv, src: other, otherFlow: "198.51.100.7", until: w, now: closed},
		{name: "window follows a new mapping", latched: nat, sig: priv, src: nat2, until: w, now: open, ok: true, moved: true, wantSrc: nat2},
		{name: "window keeps the signalled address", latched: pub, sig: pub, src: other, until: w, now: open, wantSrc: pub},
		{name: "stranger after the window", latched: nat, sig: priv, src: other, until: w, now: closed, wantSrc: nat},
		{name: "public signalled address takes the latch back", latched: other, sig: pub, src: pub, until: w, now: closed, ok: true, moved: true, wantSrc: pub},
		{name: "private signalled address does not", latched: nat, sig: priv, src: priv, until: w, now: closed, wantSrc: nat},
		{name: "loopback signalled address does not", latched: nat, sig: "127.0.0.1:4000", src: "127.0.0.1:4000", until: w, now: closed, wantSrc: nat},
		{name: "held party (unspecified) is no one", latched: nat, sig: "0.0.0.0:4000", src: "0.0.0.0:4000", until: w, now: closed, wantSrc: nat},
		{name: "public signalled address, other port", latched: nat, sig: pub, src: "203.0.113.5:4002", until: w, now: closed, wantSrc: nat},
		{name: "IPv6 public", latched: nat, sig: "[2a00:1450::1]:4000", src: "[2a00:1450::1]:4000", until: w, now: closed, ok: true, moved: true, wantSrc: "[2a00:1450::1]:4000"},
		{name: "IPv6 unique local", latched: nat, sig: "[fd00::1]:4000", src: "[fd00::1]:4000", until: w, now: closed, wantSrc: nat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := flow{src: ap(tt.latched), until: tt.until}
			var o netip.Addr
			if tt.otherFlow != "" {
				o = netip.MustParseAddr(tt.otherFlow)
			}
			ok, moved := f.accept(ap(tt.src), ap(tt.sig), o, tt.now, w)
			if ok != tt.ok || moved != tt.moved {
				t.Errorf("accept = %v, %v; want %v, %v", ok, moved, tt.ok, tt.moved)
			}
			if f.src != ap(tt.wantSrc) {
				t.Errorf("latched on %v, want %v", f.src, tt.wantSrc)
			}
			want := tt.until
			if tt.wantUntilAfterwards != 0 {
				want = tt.wantUntilAfterwards
			}
			if f.until != want {
				t.Errorf("window ends at %v, want %v", f.until, want)
			}
		})
	}
}

// Public is netip's global unicast minus its private ranges.
func TestPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"203.0.113.5": true, "10.1.2.3": false, "172.16.0.1": false, "192.168.0.1": false,
		"127.0.0.1": false, "169.254.1.1": false, "0.0.0.0": false, "224.0.0.1": false,
		"::1": false, "fe80::1": false, "fd00::1": false, "2a00:1450::1": true, "::": false,
	} {
		if got := public(netip.MustParseAddr(s)); got != want {
			t.Errorf("public(%s) = %v", s, got)
		}
	}
}

func TestFlowDest(t *testing.T) {
	tests := []struct{ latched, sig, want string }{
		{"", "192.0.2.1:4000", "192.0.2.1:4000"},                       // before any packet: the SDP's
		{"198.51.100.7:61000", "192.0.2.1:4000", "198.51.100.7:61000"}, // latched
		{"", "0.0.0.0:4000", ""},                                       // hold
		{"", "[::]:4000", ""},                                          // hold, IPv6
		{"", "192.0.2.1:0", ""},                                        // rejected stream
		{"", "", ""},                                                   // nothing signalled
		{"198.51.100.7:61000", "0.0.0.0:4000", "198.51.100.7:61000"},   // held but sending
	}
	for _, tt := range tests {
		f := flow{src: ap(tt.latched)}
		if got := f.dest(ap(tt.sig)); got != ap(tt.want) {
			t.Errorf("dest(latched %q, signalled %q) = %v, want %q", tt.latched, tt.sig, got, tt.want)
		}
	}
}

func TestRTCPPeer(t *testing.T) {
	tests := []struct{ rtp, rtcp, want string }{
		{"192.0.2.1:4000", "", "192.0.2.1:4001"},               // RFC 3550: port + 1
		{"192.0.2.1:4000", "192.0.2.9:5000", "192.0.2.9:5000"}, // RFC 3605 a=rtcp
		{"[::ffff:192.0.2.1]:4000", "", "192.0.2.1:4001"},      // unmapped
		{"192.0.2.1:65535", "", "192.0.2.1:0"},                 // no port + 1
		{"0.0.0.0:4000", "", "0.0.0.0:4001"},                   // hold stays hold
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := rtcpPeer(ap(tt.rtp), ap(tt.rtcp)); got != ap(tt.want) && !(tt.want == "" && !got.IsValid()) {
			t.Errorf("rtcpPeer(%q, %q) = %v, want %q", tt.rtp, tt.rtcp, got, tt.want)
		}
	}
}

// RFC 5761 §4: the second byte tells RTCP (192-223) from RTP.
func TestIsRTCP(t *testing.T) {
	for b1, want := range map[byte]bool{0: false, 8: false, 96: false, 127: false, 128: false, 191: false,
		192: true, 200: true, 201: true, 207: true, 223: true, 224: false, 255: false} {
		if got := isRTCP([]byte{0x80, b1}); got != want {
			t.Errorf("second byte %d: %v", b1, got)
		}
	}
	if isRTCP([]byte{0x80}) || isRTCP(nil) {
		t.Error("a packet of one byte is no RTCP")
	}
}

func TestParseReport(t *testing.T) {
	marshal := func(ps ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	block := func(lost, jitter uint32) []rtcp.ReceptionReport {
		return []rtcp.ReceptionReport{{SSRC: 9, TotalLost: lost, Jitter: jitter}, {SSRC: 10, TotalLost: 99, Jitter: 99}}
	}
	tests := []struct {
		name string
		b    []byte
		want report
		ok   bool
	}{
		{"RR", marshal(&rtcp.ReceiverReport{SSRC: 1, Reports: block(12, 80)}), report{12, 80}, true},
		{"SR", marshal(&rtcp.SenderReport{SSRC: 1, Reports: block(3, 4)}), report{3, 4}, true},
		{"negative loss (RFC 3550 6.4.1)", marshal(&rtcp.ReceiverReport{SSRC: 1, Reports: block(0xffffff, 0)}), report{-1, 0}, true},
		{"largest loss", marshal(&rtcp.ReceiverReport{SSRC: 1, Reports: block(0x7fffff, 0)}), report{0x7fffff, 0}, true},
		{"compound SR without blocks then RR", marshal(&rtcp.SenderReport{SSRC: 1}, &rtcp.ReceiverReport{SSRC: 1, Reports: block(5, 6)}), report{5, 6}, true},
		{"RR without blocks", marshal(&rtcp.ReceiverReport{SSRC: 1}, &rtcp.SourceDescription{}), report{}, false},
		{"BYE", marshal(&rtcp.Goodbye{Sources: []uint32{1}}), report{}, false},
		{"truncated", marshal(&rtcp.ReceiverReport{SSRC: 1, Reports: block(1, 1)})[:20], report{}, false},
		{"RTP", []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, report{}, false},
		{"empty", nil, report{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseReport(tt.b)
			if ok != tt.ok || got != tt.want {
				t.Errorf("parseReport = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzParseReport: any datagram arriving on an RTCP path is parsed; bad
// ones must not crash the reader, and a report read is within RFC 3550's
// ranges.
func FuzzParseReport(f *testing.F) {
	for _, p := range []rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, TotalLost: 0xfffffe, Jitter: 160}}},
		&rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, TotalLost: 3}}},
		&rtcp.Goodbye{Sources: []uint32{1}},
	} {
		b, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x80, 200, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, ok := parseReport(b)
		if !ok {
			if rep != (report{}) {
				t.Fatalf("no report but %+v", rep)
			}
			return
		}
		if rep.lost < -(1<<23) || rep.lost >= 1<<23 {
			t.Fatalf("lost %d beyond 24 bits", rep.lost)
		}
		if len(b) < 8+24 {
			t.Fatalf("a report block from %d bytes", len(b))
		}
		if !isRTCP(b) {
			t.Fatalf("a report from a packet that is not RTCP by RFC 5761: %x", b[:2])
		}
	})
}

func TestJitterMS(t *testing.T) {
	for _, tt := range []struct {
		j    uint32
		hz   int
		want float64
	}{{160, 8000, 20}, {160, 0, 20}, {480, 48000, 10}, {90, 90000, 1}} {
		if got := jitterMS(tt.j, tt.hz); got != tt.want {
			t.Errorf("jitterMS(%d, %d) = %v, want %v", tt.j, tt.hz, got, tt.want)
		}
	}
}

func TestConfig(t *testing.T) {
	c, err := Config{}.withDefaults(4)
	if err != nil {
		t.Fatal(err)
	}
	if c.PortMin != 30000 || c.PortMax != 39999 || c.Readers != 4 || c.LatchWindow != 3*time.Second || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if n := pairs(c.PortMin, c.PortMax); n != 5000 {
		t.Errorf("default range holds %d legs, want 5000", n)
	}
	for _, tt := range []struct {
		c   Config
		key string
	}{
		{Config{PortMin: 0, PortMax: 100}, "port_min"},
		{Config{PortMin: 70000, PortMax: 70001}, "port_min"},
		{Config{PortMin: 1000, PortMax: 70000}, "port_max"},
		{Config{PortMin: 2000, PortMax: 1000}, "port_min 2000 to port_max 1000"},
		{Config{PortMin: 1001, PortMax: 1001}, "no even/odd port pair"},
		{Config{PortMin: 1001, PortMax: 1002}, "no even/odd port pair"},
		{Config{Readers: -1}, "readers"},
		{Config{LatchWindow: -time.Second}, "latch_window"},
	} {
		if _, err := tt.c.withDefaults(1); err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%+v: %v, want an error naming %s", tt.c, err, tt.key)
		}
	}
	if c, err := (Config{PortMin: 1001, PortMax: 1003}).withDefaults(1); err != nil || pairs(c.PortMin, c.PortMax) != 1 {
		t.Errorf("1001-1003: %v, %d pairs", err, pairs(c.PortMin, c.PortMax))
	}
}
