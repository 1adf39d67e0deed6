package sip

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestStampViaAndResponseTarget(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	tests := []struct {
		name       string
		via        string
		force      bool
		wantParams string
		wantTarget string
	}{
		{"RFC3261 18.2.1 sent-by equals the source: nothing added", "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK1", false, ";branch=z9hG4bK1", "198.51.100.7:5062"},
		{"RFC3261 18.2.1 sent-by differs: received added", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1", false, ";branch=z9hG4bK1;received=198.51.100.7", "198.51.100.7:5062"},
		{"RFC3261 18.2.1 sent-by is a name: received added, default port", "SIP/2.0/UDP phone.example;branch=z9hG4bK1", false, ";branch=z9hG4bK1;received=198.51.100.7", "198.51.100.7:5060"},
		{"RFC3581 4 rport: received and rport filled, source port used", "SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bK1", false, ";rport=40000;branch=z9hG4bK1;received=198.51.100.7", "198.51.100.7:40000"},
		{"a received= the sender wrote is replaced by the source", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;received=10.255.255.1", false, ";branch=z9hG4bK1;received=198.51.100.7", "198.51.100.7:5062"},
		{"a received= the sender wrote is removed when sent-by is the source", "SIP/2.0/TCP 198.51.100.7:5099;received=10.255.255.1;branch=z9hG4bK1", false, ";branch=z9hG4bK1", "198.51.100.7:5099"},
		{"force rport without rport", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1", true, ";branch=z9hG4bK1;received=198.51.100.7", "198.51.100.7:40000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v Via
			if err := v.parse(tc.via, true); err != nil {
				t.Fatal(err)
			}
			req := &Request{Header: Header{Via: []Via{v}}}
			req.StampVia(src)
			if got := string(req.Via[0].Params); got != tc.wantParams {
				t.Errorf("params %q, want %q", got, tc.wantParams)
			}
			if got := ResponseTarget(&req.Via[0], src, tc.force, 5060).String(); got != tc.wantTarget {
				t.Errorf("target %s, want %s", got, tc.wantTarget)
			}
		})
	}
}

func TestHeaderAllKeepsCommas(t *testing.T) {
	m, err := ParseString("SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n" +
		"WWW-Authenticate: Digest realm=\"b\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"\r\n" +
		"WWW-Authenticate: Digest realm=\"b\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	all := m.Head().All("www-authenticate")
	if len(all) != 2 || all[1] != `Digest realm="b", nonce="n1", algorithm=MD5, qop="auth"` {
		t.Fatalf("All = %q", all)
	}
}

// stampViaReference is StampVia as Params.Set and Params.Del write it,
// which StampVia must match byte for byte.
func stampViaReference(v *Via, src netip.AddrPort) {
	ip := src.Addr().Unmap()
	_, rport := v.RPort()
	sentBy, err := netip.ParseAddr(strings.Trim(v.Host, "[]"))
	switch {
	case rport || err != nil || sentBy.Unmap() != ip:
		v.Params = v.Params.Set("received", ip.String())
	case v.Params.Has("received"):
		v.Params = v.Params.Del("received")
	}
	if rport {
		v.Params = v.Params.Set("rport", strconv.Itoa(int(src.Port())))
	}
}

func TestStampViaWritesWhatSetWould(t *testing.T) {
	srcs := []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.7:40000"),
		netip.MustParseAddrPort("[2001:db8::7]:5060"),
		netip.MustParseAddrPort("[::ffff:198.51.100.7]:1"),
		{},
	}
	hosts := []string{"198.51.100.7:5062", "[2001:db8::7]", "10.0.0.1", "phone.example"}
	params := []string{
		"", ";branch=z9hG4bK1", ";rport;branch=z9hG4bK1", ";branch=z9hG4bK1;rport", ";RPort;Branch=z9hG4bK1",
		";received=10.1.1.1;branch=z9hG4bK1", ";branch=z9hG4bK1;received=1.2.3.4;received=5.6.7.8",
		";rport=1234;received;branch=x", ";rport;rport;received=1.1.1.1;Received=2.2.2.2", ";lr;x=\"a;b\";rport",
		";branch=z9hG4bK1;alias;maddr=239.1.1.1;ttl=16",
	}
	for _, src := range srcs {
		for _, host := range hosts {
			for _, ps := range params {
				var v Via
				if err := v.parse("SIP/2.0/UDP "+host+ps, true); err != nil {
					t.Fatalf("%s%s: %v", host, ps, err)
				}
				want := v
				stampViaReference(&want, src)
				req := &Request{Header: Header{Via: []Via{v}}}
				req.StampVia(src)
				if got := req.Via[0].Params; got != want.Params {
					t.Errorf("StampVia(%s) of %s%s: %q, want %q", src, host, ps, got, want.Params)
				}
			}
		}
	}
}

func TestStampViaAllocations(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	var v Via
	if err := v.parse("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK776asdhds;rport", true); err != nil {
		t.Fatal(err)
	}
	req := &Request{Header: Header{Via: []Via{v}}}
	if n := testing.AllocsPerRun(100, func() { req.Via[0] = v; req.StampVia(src) }); n > 1 {
		t.Errorf("StampVia: %v allocations, want 1 (the new parameters)", n)
	}
}
