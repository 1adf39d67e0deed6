package sip

import (
	"net/netip"
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
