package proxy

import (
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

func tokenProxy(key string) *Proxy {
	return &Proxy{flowKey: []byte(key), env: Env{Network: &fakeNet{}}}
}

func udpFlow(s string) Flow { return Flow{Proto: "UDP", Remote: netip.MustParseAddrPort(s)} }

func TestNeedsFlow(t *testing.T) {
	contact := func(s string) []sip.Address {
		u, err := sip.ParseURI(s)
		if err != nil {
			t.Fatal(err)
		}
		return []sip.Address{{URI: u}}
	}
	for _, tc := range []struct {
		name    string
		f       Flow
		contact []sip.Address
		want    bool
	}{
		{"no flow", Flow{}, contact("sip:a@192.0.2.1"), false},
		{"UDP from the Contact's address and port", udpFlow("192.0.2.1:5060"), contact("sip:a@192.0.2.1"), false},
		{"UDP through a NAT: other address", udpFlow("203.0.113.9:5060"), contact("sip:a@10.0.0.2"), true},
		{"UDP from the Contact's address, another port (sipsak: sends from one socket, listens on another)", udpFlow("192.0.2.1:40000"), contact("sip:a@192.0.2.1:5060"), false},
		{"Contact with a host name", udpFlow("192.0.2.1:5060"), contact("sip:a@phone.example"), true},
		{"no Contact", udpFlow("192.0.2.1:5060"), nil, true},
		{"TCP: always (RFC 5923 connection reuse)", Flow{Proto: "TCP", Remote: netip.MustParseAddrPort("192.0.2.1:5060")}, contact("sip:a@192.0.2.1;transport=tcp"), true},
		{"IPv6 from the Contact's address", udpFlow("[2001:db8::1]:5060"), contact("sip:a@[2001:db8::1]"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := needsFlow(tc.f, tc.contact); got != tc.want {
				t.Errorf("needsFlow = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFlowTokenRoundTrip(t *testing.T) {
	p := tokenProxy("k1")
	for _, tok := range []flowToken{
		{tag: 1, caller: udpFlow("203.0.113.9:40000")},
		{tag: 2, callee: Flow{Proto: "TCP", Remote: netip.MustParseAddrPort("[2001:db8::7]:5061")}},
		{tag: 3, caller: udpFlow("203.0.113.9:40000"), callee: Flow{Proto: "TLS", Remote: netip.MustParseAddrPort("198.51.100.2:5061")}},
	} {
		user := flowTokenPrefix + b64(p.encodeToken(tok))
		got, ok := p.decodeToken(user, "")
		if !ok || got != tok {
			t.Errorf("decode(encode(%+v)) = %+v, %v", tok, got, ok)
		}
		if strings.ContainsAny(user, "=+/%;@:") {
			t.Errorf("token %q has characters a user part must escape", user)
		}
	}
	tok := flowToken{tag: 9, caller: udpFlow("203.0.113.9:40000")}
	user := flowTokenPrefix + b64(p.encodeToken(tok))
	if _, ok := tokenProxy("another key").decodeToken(user, ""); ok {
		t.Error("a token signed with another key was accepted")
	}
	// Bound to its dialog: a token of one Call-ID steers no other.
	tok.callID = "dialog-a@example.test"
	user = flowTokenPrefix + b64(p.encodeToken(tok))
	if got, ok := p.decodeToken(user, "dialog-a@example.test"); !ok || got != tok {
		t.Errorf("token of its own dialog: %+v, %v", got, ok)
	}
	if _, ok := p.decodeToken(user, "dialog-b@example.test"); ok {
		t.Error("a token was accepted in a request of another dialog (Call-ID)")
	}
	tok.callID = ""
	b := p.encodeToken(tok)
	b[7] ^= 1 // the first byte of the caller's address
	if _, ok := p.decodeToken(flowTokenPrefix+b64(b), ""); ok {
		t.Error("a tampered token was accepted")
	}
	for _, bad := range []string{"", "ft-", "ft-!!", "alice", "ft-" + strings.Repeat("A", 200)} {
		if _, ok := p.decodeToken(bad, ""); ok {
			t.Errorf("decodeToken(%q) accepted", bad)
		}
	}
}

func TestDialogFlow(t *testing.T) {
	p := tokenProxy("k")
	caller, callee := udpFlow("203.0.113.9:40000"), udpFlow("198.51.100.7:41000")
	tok := flowToken{tag: tagHash("caller-tag"), caller: caller, callee: callee}
	req := func(fromTag string) *sip.Request {
		r := &sip.Request{Method: sip.BYE}
		r.From.Params = sip.Params(";tag=" + fromTag)
		return r
	}
	if got := p.dialogFlow(req("caller-tag"), tok); got != callee {
		t.Errorf("the caller's request goes over %+v, want the callee's flow", got)
	}
	if got := p.dialogFlow(req("callee-tag"), tok); got != caller {
		t.Errorf("the callee's request goes over %+v, want the caller's flow", got)
	}
	if got := p.dialogFlow(req("caller-tag"), flowToken{tag: tok.tag, caller: caller}); !got.IsZero() {
		t.Errorf("no callee flow: got %+v, want none (the Request-URI)", got)
	}
	tcp := flowToken{tag: tok.tag, callee: Flow{Proto: "TCP", Remote: netip.MustParseAddrPort("198.51.100.7:5060")}}
	if got := p.dialogFlow(req("caller-tag"), tcp); !got.IsZero() {
		t.Errorf("a closed TCP flow: got %+v, want none", got)
	}
}

// encodeToken returns the token's bytes (appendToken).
func (p *Proxy) encodeToken(t flowToken) []byte { return p.appendToken(nil, t) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// FuzzFlowToken: whatever a Route's user part holds, decoding neither
// panics nor accepts what this proxy did not sign.
func FuzzFlowToken(f *testing.F) {
	p := tokenProxy("fuzz")
	f.Add(flowTokenPrefix + b64(p.encodeToken(flowToken{tag: 1, caller: udpFlow("203.0.113.9:40000")})))
	f.Add(flowTokenPrefix + b64(p.encodeToken(flowToken{tag: 2, callee: udpFlow("[2001:db8::1]:5060")})))
	f.Add("ft-AAAA")
	f.Add("alice")
	f.Fuzz(func(t *testing.T, user string) {
		tok, ok := p.decodeToken(user, "")
		if !ok {
			return
		}
		// Accepted: it must be what the proxy would have written.
		if again := flowTokenPrefix + b64(p.encodeToken(tok)); again != user {
			t.Errorf("accepted %q, which encodes back as %q", user, again)
		}
	})
}

// The Record-Route carries a token only where a flow is needed: for a
// caller whose Contact is not where its INVITE came from, and only when
// that caller sent the INVITE itself (one Via); behind another proxy, the
// flow leads to that proxy, which routes the dialog's requests by itself.
func TestRecordRouteToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		extra   []string
		wantTok bool
	}{
		{"Contact is the source: no token", nil, false},
		{"caller behind NAT: token", []string{"Contact: <sip:alice@10.0.0.7:5070>"}, true},
		{"behind NAT but through another proxy: no token",
			[]string{"Contact: <sip:alice@10.0.0.7:5070>", "Via: SIP/2.0/UDP 10.0.0.7:5070;branch=z9hG4bKua1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, Config{Locations: bobLocations}, nil)
			req := request(t, sip.INVITE, "sip:carol@example.test", tc.extra...)
			if len(tc.extra) > 0 && strings.HasPrefix(tc.extra[0], "Contact:") {
				req.Contact = req.Contact[len(req.Contact)-1:] // the extra Contact replaces the default
			}
			e.serve(req)
			out := e.net.requests(t)
			if len(out) != 1 || len(out[0].RecordRoute) == 0 {
				t.Fatalf("sent %v", out)
			}
			user := out[0].RecordRoute[0].URI.User
			if got := strings.HasPrefix(user, flowTokenPrefix); got != tc.wantTok {
				t.Errorf("Record-Route user %q, token wanted: %v", user, tc.wantTok)
			}
			if tc.wantTok {
				tok, ok := e.p.decodeToken(user, req.CallID)
				if !ok || tok.caller.Remote != callerIn || tok.tag != tagHash("a1") || !tok.callee.IsZero() {
					t.Errorf("token %+v (ok %v), want the caller's flow %s and tag a1", tok, ok, callerIn)
				}
			}
		})
	}
}

// BenchmarkFlowToken is the flow token of a call between phones behind
// NATs: made for the INVITE's Record-Route (flowUser), read back from the
// Route of each of the dialog's requests (decodeToken).
func BenchmarkFlowToken(b *testing.B) {
	p := tokenProxy("k1")
	req := &sip.Request{Method: sip.INVITE, URI: sip.URI{Scheme: "sip", User: "bob", Host: "10.0.0.2", Port: 5060}}
	req.From.Params = ";tag=a1b2c3"
	req.CallID = "3f4f3334d76582a27117@10.0.0.1"
	req.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "alice", Host: "10.0.0.1", Port: 5060}}}
	in, to := udpFlow("203.0.113.9:40000"), udpFlow("198.51.100.2:41000")
	user := p.flowUser(req, in, to)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.flowUser(req, in, to)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := p.decodeToken(user, req.CallID); !ok {
				b.Fatal("token refused")
			}
		}
	})
}

// TestFlowUserSides: the caller's flow goes into the token when its
// Contact is not the address it sends from (needsFlow); the callee's
// whenever the location service chose its flow, unless the
// Request-URI is the flow's own address and port.
func TestFlowUserSides(t *testing.T) {
	p := tokenProxy("k1")
	req := func(ruri, contact string) *sip.Request {
		r := &sip.Request{Method: sip.INVITE}
		r.CallID = "c1@test"
		u, err := sip.ParseURI(ruri)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sip.ParseURI(contact)
		if err != nil {
			t.Fatal(err)
		}
		r.URI, r.Contact = u, []sip.Address{{URI: c}}
		r.From.Params = ";tag=a1"
		return r
	}
	for _, tc := range []struct {
		name           string
		req            *sip.Request
		in, to         Flow
		caller, callee bool
	}{
		{"both at their Contacts", req("sip:b@192.0.2.2:5060", "sip:a@192.0.2.1:5060"), udpFlow("192.0.2.1:5060"), Flow{}, false, false},
		{"caller behind a NAT", req("sip:b@192.0.2.2:5060", "sip:a@10.0.0.1:5060"), udpFlow("203.0.113.9:40000"), Flow{}, true, false},
		{"caller sends from another port of its Contact's address (sipsak)", req("sip:b@192.0.2.2:5060", "sip:a@192.0.2.1:5060"), udpFlow("192.0.2.1:40000"), Flow{}, false, false},
		{"callee's flow chosen, same address, other port (nat.contact: flow)", req("sip:b@192.0.2.2:5060", "sip:a@192.0.2.1:5060"), udpFlow("192.0.2.1:5060"), udpFlow("192.0.2.2:41000"), false, true},
		{"callee's flow at its Request-URI exactly", req("sip:b@192.0.2.2:5060", "sip:a@192.0.2.1:5060"), udpFlow("192.0.2.1:5060"), udpFlow("192.0.2.2:5060"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := p.flowUser(tc.req, tc.in, tc.to)
			var tok flowToken
			if user != "" {
				var ok bool
				if tok, ok = p.decodeToken(user, tc.req.CallID); !ok {
					t.Fatalf("token %q refused", user)
				}
			}
			if got := !tok.caller.IsZero(); got != tc.caller {
				t.Errorf("caller's flow in the token: %v, want %v", got, tc.caller)
			}
			if got := !tok.callee.IsZero(); got != tc.callee {
				t.Errorf("callee's flow in the token: %v, want %v", got, tc.callee)
			}
		})
	}
}
