package sip

import (
	"errors"
	"testing"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want URI
	}{
		{"RFC3261 19.1.1 user and host", "sip:alice@atlanta.com",
			URI{Scheme: "sip", User: "alice", Host: "atlanta.com"}},
		{"RFC3261 19.1.1 password and transport", "sip:alice:secretword@atlanta.com;transport=tcp",
			URI{Scheme: "sip", User: "alice", Password: "secretword", Host: "atlanta.com", Params: ";transport=tcp"}},
		{"RFC3261 19.1.1 sips with headers", "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
			URI{Scheme: "sips", User: "alice", Host: "atlanta.com", Headers: "subject=project%20x&priority=urgent"}},
		{"RFC3261 19.1.1 telephone-subscriber with password", "sip:+1-212-555-1212:1234@gateway.com;user=phone",
			URI{Scheme: "sip", User: "+1-212-555-1212", Password: "1234", Host: "gateway.com", Params: ";user=phone"}},
		{"RFC3261 19.1.1 sips numeric user", "sips:1212@gateway.com",
			URI{Scheme: "sips", User: "1212", Host: "gateway.com"}},
		{"RFC3261 19.1.1 IPv4 host", "sip:alice@192.0.2.4",
			URI{Scheme: "sip", User: "alice", Host: "192.0.2.4"}},
		{"RFC3261 19.1.1 no user, method param and escaped header", "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
			URI{Scheme: "sip", Host: "atlanta.com", Params: ";method=REGISTER", Headers: "to=alice%40atlanta.com"}},
		{"RFC3261 19.1.1 semicolon in user", "sip:alice;day=tuesday@atlanta.com",
			URI{Scheme: "sip", User: "alice;day=tuesday", Host: "atlanta.com"}},
		{"RFC3261 19.1.1 port", "sip:alice@atlanta.com:5070",
			URI{Scheme: "sip", User: "alice", Host: "atlanta.com", Port: 5070}},
		{"RFC3261 19.1.1 highest port", "sip:h.example.com:65535",
			URI{Scheme: "sip", Host: "h.example.com", Port: 65535}},
		{"RFC3261 19.1.1 params with and without values", "sip:p.example.com;lr;transport=tcp;maddr=192.0.2.1;ttl=15;x",
			URI{Scheme: "sip", Host: "p.example.com", Params: ";lr;transport=tcp;maddr=192.0.2.1;ttl=15;x"}},
		{"RFC3261 19.1.1 scheme is case-insensitive", "SIP:alice@atlanta.com",
			URI{Scheme: "sip", User: "alice", Host: "atlanta.com"}},
		{"RFC3261 19.1.1 sips scheme upper case", "SiPs:alice@atlanta.com",
			URI{Scheme: "sips", User: "alice", Host: "atlanta.com"}},
		{"RFC3261 25.1 hostname with hyphen and underscore", "sip:a-b_c.example.com",
			URI{Scheme: "sip", Host: "a-b_c.example.com"}},
		{"RFC5118 4.1 IPv6 reference", "sip:caller@[2001:db8::1]",
			URI{Scheme: "sip", User: "caller", Host: "[2001:db8::1]"}},
		{"RFC5118 4.4 IPv6 reference with port", "sip:[2001:db8::10]:5070",
			URI{Scheme: "sip", Host: "[2001:db8::10]", Port: 5070}},
		{"RFC5118 4.3 port-ambiguous IPv6 reference has no port", "sip:[2001:db8::10:5070]",
			URI{Scheme: "sip", Host: "[2001:db8::10:5070]"}},
		{"RFC5118 4.9 IPv4-mapped IPv6", "sip:ted@[::ffff:192.0.2.2]",
			URI{Scheme: "sip", User: "ted", Host: "[::ffff:192.0.2.2]"}},
		{"RFC5118 4.10 IPv6 reference with three colons tolerated", "sip:user@[2001:db8:::192.0.2.1]",
			URI{Scheme: "sip", User: "user", Host: "[2001:db8:::192.0.2.1]"}},
		{"RFC5118 4.10 IPv6 reference with two colons", "sip:user@[2001:db8::192.0.2.1]",
			URI{Scheme: "sip", User: "user", Host: "[2001:db8::192.0.2.1]"}},
		{"RFC4475 3.1.1.3 esc01 escaped user is kept escaped", "sip:sips%3Auser%40example.com@example.net",
			URI{Scheme: "sip", User: "sips%3Auser%40example.com", Host: "example.net"}},
		{"RFC4475 3.1.1.3 esc01 escaped parameters", "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
			URI{Scheme: "sip", User: "cal%6Cer", Host: "host5.example.net", Params: ";%6C%72;n%61me=v%61lue%25%34%31"}},
		{"RFC4475 3.1.1.3 esc01 escaped spaces", "sip:I%20have%20spaces@example.net",
			URI{Scheme: "sip", User: "I%20have%20spaces", Host: "example.net"}},
		{"RFC4475 3.1.1.4 escaped null", "sip:null-%00-null@example.com",
			URI{Scheme: "sip", User: "null-%00-null", Host: "example.com"}},
		{"RFC4475 3.1.1.9 semiuri parameters in user part", "sip:user;par=u%40example.net@example.com",
			URI{Scheme: "sip", User: "user;par=u%40example.net", Host: "example.com"}},
		{"RFC4475 3.1.1.2 intmeth unusual user and password",
			"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
			URI{Scheme: "sip", User: "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*", Password: "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)", Host: "example.com"}},
		{"RFC4475 3.3.14 regescrt escaped Route header", "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
			URI{Scheme: "sip", User: "user", Host: "example.com", Headers: "Route=%3Csip:sip.example.com%3E"}},
		{"RFC4475 3.3.13 cparam02 url-parameter", "sip:+19725552222@gw1.example.net;unknownparam",
			URI{Scheme: "sip", User: "+19725552222", Host: "gw1.example.net", Params: ";unknownparam"}},
		{"RFC3966 tel global number", "tel:+1-201-555-0123",
			URI{Scheme: "tel", User: "+1-201-555-0123"}},
		{"RFC3966 tel local number with phone-context", "tel:7042;phone-context=example.com",
			URI{Scheme: "tel", User: "7042", Params: ";phone-context=example.com"}},
		{"RFC3966 tel scheme is case-insensitive", "TEL:+1(555)*#",
			URI{Scheme: "tel", User: "+1(555)*#"}},
		{"RFC3261 19.1 other schemes are opaque: urn", "urn:service:sos",
			URI{Scheme: "urn", Opaque: "service:sos"}},
		{"RFC4475 3.3.4 unksm2 http URI", "http://www.example.com",
			URI{Scheme: "http", Opaque: "//www.example.com"}},
		{"RFC4475 3.3.2 unkscm unknown scheme", "nobodyKnowsThisScheme:totallyopaquecontent",
			URI{Scheme: "nobodyKnowsThisScheme", Opaque: "totallyopaquecontent"}},
		{"RFC4475 3.3.3 novelsc known but atypical scheme", "soap.beep://192.0.2.103:3002",
			URI{Scheme: "soap.beep", Opaque: "//192.0.2.103:3002"}},
		{"RFC4475 3.3.4 unksm2 isbn", "isbn:2983792873",
			URI{Scheme: "isbn", Opaque: "2983792873"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURI(tt.in)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseURI(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseURIInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"RFC3261 19.1.1 no scheme", "alice@atlanta.com"},
		{"RFC3986 3.1 scheme starts with a letter", "1sip:alice@atlanta.com"},
		{"RFC3261 25.1 scheme with invalid character", "s_p:alice@atlanta.com"},
		{"RFC3261 25.1 empty host", "sip:"},
		{"RFC3261 25.1 empty host after user", "sip:alice@"},
		{"RFC3261 25.1 empty user", "sip:@atlanta.com"},
		{"RFC3261 25.1 port 0", "sip:alice@atlanta.com:0"},
		{"RFC3261 25.1 port 65536", "sip:alice@atlanta.com:65536"},
		{"RFC3261 25.1 port with letters", "sip:alice@atlanta.com:50x0"},
		{"RFC3261 25.1 port letters only", "sip:alice@atlanta.com:http"},
		{"RFC3261 25.1 empty port", "sip:alice@atlanta.com:"},
		{"RFC3261 25.1 huge port", "sip:alice@atlanta.com:99999999999999999999999"},
		{"RFC4475 3.1.2.8 space in URI", "sip:alice @atlanta.com"},
		{"RFC4475 3.1.2.8 space before parameter", "sip:user@example.com; lr"},
		{"RFC4475 3.1.2.7 URI in angle brackets", "<sip:user@example.com>"},
		{"RFC5118 4.2 unbracketed IPv6 reference", "sip:2001:db8::10"},
		{"RFC5118 4.2 unbracketed IPv6 with user", "sip:user@2001:db8::10"},
		{"RFC3261 25.1 unterminated IPv6 reference", "sip:[2001:db8::1"},
		{"RFC3261 25.1 IPv4 address in brackets", "sip:[192.0.2.1]"},
		{"RFC3261 25.1 IPv6 reference with junk", "sip:[2001:db8::g]"},
		{"RFC3261 25.1 IPv6 zone", "sip:[fe80::1%25eth0]"},
		{"RFC3261 25.1 junk after IPv6 reference", "sip:[2001:db8::1]x"},
		{"RFC3261 25.1 invalid host character", "sip:alice@atl!anta.com"},
		{"RFC3261 25.1 two at signs", "sip:alice@bob@atlanta.com"},
		{"RFC3261 25.1 invalid user character", "sip:al<ce@atlanta.com"},
		{"RFC3261 25.1 invalid password character", "sip:alice:se;cret@atlanta.com"},
		{"RFC3261 25.1 truncated escape", "sip:alice%2@atlanta.com"},
		{"RFC3261 25.1 non-hex escape", "sip:alice%zz@atlanta.com"},
		{"RFC4475 3.1.2.1 empty parameter", "sip:atlanta.com;;lr"},
		{"RFC4475 3.1.2.1 trailing semicolon", "sip:atlanta.com;"},
		{"RFC3261 25.1 parameter with empty value", "sip:atlanta.com;transport="},
		{"RFC3261 25.1 parameter with invalid character", "sip:atlanta.com;a=b\"c"},
		{"RFC3261 25.1 empty headers", "sip:atlanta.com?"},
		{"RFC3261 25.1 header with space", "sip:atlanta.com?subject=a b"},
		{"RFC3966 empty tel number", "tel:"},
		{"RFC3966 tel number with space", "tel:+1 555"},
		{"RFC3966 tel number with letters", "tel:+1-555-CALL-NOW"},
		{"RFC3966 tel empty parameter", "tel:+1555;;x"},
		{"RFC3986 empty opaque part", "urn:"},
		{"RFC3986 opaque part with space", "urn:service sos"},
		{"RFC3986 opaque part with quote", `urn:service"sos`},
		{"RFC3986 opaque part with angle bracket", "urn:service>sos"},
		{"RFC3986 opaque part with control character", "urn:a\x00b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if u, err := ParseURI(tt.in); err == nil {
				t.Errorf("ParseURI(%q) = %#v, want an error", tt.in, u)
			}
		})
	}
	if _, err := ParseURI("alice@atlanta.com"); !errors.Is(err, ErrURIScheme) {
		t.Errorf("missing scheme: error %v, want ErrURIScheme", err)
	}
}

func TestURIString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"RFC3261 19.1.1 written as read", "sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr?subject=project%20x&priority=urgent",
			"sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr?subject=project%20x&priority=urgent"},
		{"RFC3261 19.1.1 escapes are kept", "sip:sips%3Auser%40example.com@example.net;%6C%72",
			"sip:sips%3Auser%40example.com@example.net;%6C%72"},
		{"RFC3261 19.1.1 scheme written in lower case", "SIP:alice@AtLanTa.CoM",
			"sip:alice@AtLanTa.CoM"},
		{"RFC3261 25.1 leading zeros of a port are dropped", "sip:alice@atlanta.com:05060",
			"sip:alice@atlanta.com:5060"},
		{"RFC5118 4.3 port-ambiguous stays ambiguous", "sip:[2001:db8::10:5070]",
			"sip:[2001:db8::10:5070]"},
		{"RFC3966 tel", "tel:+1-201-555-0123;ext=1", "tel:+1-201-555-0123;ext=1"},
		{"RFC3986 opaque", "soap.beep://192.0.2.103:3002", "soap.beep://192.0.2.103:3002"},
		{"RFC4475 3.1.1.2 intmeth",
			"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
			"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			u2, err := ParseURI(u.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", u.String(), err)
			}
			if u2 != u {
				t.Errorf("reparse changed the URI\n got %#v\nwant %#v", u2, u)
			}
		})
	}
}

func TestURIHelpers(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		hostname string
		isSIP    bool
	}{
		{"RFC3261 19.1.1 hostname", "sip:alice@atlanta.com", "atlanta.com", true},
		{"RFC3261 19.1.1 sips is SIP", "sips:alice@atlanta.com", "atlanta.com", true},
		{"RFC5118 4.1 IPv6 hostname without brackets", "sip:[2001:db8::1]:5060", "2001:db8::1", true},
		{"RFC3966 tel is not SIP", "tel:+15551234", "", false},
		{"RFC3986 opaque is not SIP", "urn:service:sos", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Hostname(); got != tt.hostname {
				t.Errorf("Hostname() = %q, want %q", got, tt.hostname)
			}
			if got := u.IsSIP(); got != tt.isSIP {
				t.Errorf("IsSIP() = %v, want %v", got, tt.isSIP)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"RFC3261 19.1.2 nothing to decode", "alice", "alice"},
		{"RFC4475 3.1.1.3 esc01 user", "sips%3Auser%40example.com", "sips:user@example.com"},
		{"RFC4475 3.1.1.3 esc01 escaped percent", "v%61lue%25%34%31", "value%41"},
		{"RFC4475 3.1.1.4 escaped null", "null-%00-null", "null-\x00-null"},
		{"RFC3261 25.1 lower-case hex", "%6c%72", "lr"},
		{"RFC4475 3.1.1.5 invalid escapes are kept", "%Z%45", "%ZE"},
		{"RFC3261 25.1 truncated escape kept", "a%4", "a%4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unescape(tt.in); got != tt.want {
				t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// uriEqualCases are the examples of RFC 3261 §19.1.4, written as pairs,
// followed by the rules of that section the examples do not show.
var uriEqualCases = []struct {
	name  string
	a, b  string
	equal bool
}{
	// "The URIs within each of the following sets are equivalent"
	{"RFC3261 19.1.4 equivalent: escaped user, host case, transport case",
		"sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp", true},
	{"RFC3261 19.1.4 equivalent: newparam only in one",
		"sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5", true},
	{"RFC3261 19.1.4 equivalent: security only in one",
		"sip:carol@chicago.com", "sip:carol@chicago.com;security=on", true},
	{"RFC3261 19.1.4 equivalent: newparam and security each only in one",
		"sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on", true},
	{"RFC3261 19.1.4 equivalent: parameter order",
		"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
		"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com", true},
	{"RFC3261 19.1.4 equivalent: header order",
		"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
		"sip:alice@atlanta.com?priority=urgent&subject=project%20x", true},
	// "The URIs within each of the following sets are not equivalent"
	{"RFC3261 19.1.4 not equivalent: different usernames",
		"SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP", false},
	{"RFC3261 19.1.4 not equivalent: can resolve to different ports",
		"sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", false},
	{"RFC3261 19.1.4 not equivalent: can resolve to different transports",
		"sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp", false},
	{"RFC3261 19.1.4 not equivalent: can resolve to different port and transports",
		"sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp", false},
	{"RFC3261 19.1.4 not equivalent: different header component",
		"sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting", false},
	{"RFC3261 19.1.4 not equivalent: host name and its address",
		"sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4", false},
	// "equality is not transitive"
	{"RFC3261 19.1.4 not transitive: security=on and security=off",
		"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off", false},
	{"RFC3261 19.1.4 not transitive: plain and security=off",
		"sip:carol@chicago.com", "sip:carol@chicago.com;security=off", true},
	// The rules of §19.1.4 in prose.
	{"RFC3261 19.1.4 SIP and SIPS URIs are never equivalent",
		"sip:alice@atlanta.com", "sips:alice@atlanta.com", false},
	{"RFC3261 19.1.4 userinfo is case-sensitive",
		"sip:Alice@atlanta.com", "sip:alice@atlanta.com", false},
	{"RFC3261 19.1.4 password is case-sensitive",
		"sip:alice:Secret@atlanta.com", "sip:alice:secret@atlanta.com", false},
	{"RFC3261 19.1.4 password present in one only",
		"sip:alice:secret@atlanta.com", "sip:alice@atlanta.com", false},
	{"RFC3261 19.1.4 user present in one only",
		"sip:alice@atlanta.com", "sip:atlanta.com", false},
	{"RFC3261 19.1.4 host is case-insensitive",
		"sip:alice@ATLANTA.com", "sip:alice@atlanta.COM", true},
	{"RFC3261 19.1.4 IPv6 host is case-insensitive",
		"sip:[2001:DB8::1]", "sip:[2001:db8::1]", true},
	{"RFC3261 19.1.4 parameters in both must match",
		"sip:h.example.com;foo=1", "sip:h.example.com;foo=2", false},
	{"RFC3261 19.1.4 parameter values compare case-insensitively",
		"sip:h.example.com;foo=ABC", "sip:h.example.com;FOO=abc", true},
	{"RFC3261 19.1.4 escaped parameter value",
		"sip:h.example.com;transport=%74cp", "sip:h.example.com;transport=tcp", true},
	{"RFC3261 19.1.4 user parameter in one only never matches",
		"sip:+1555@h.example.com;user=phone", "sip:+1555@h.example.com", false},
	{"RFC3261 19.1.4 ttl parameter in one only never matches",
		"sip:h.example.com;ttl=1", "sip:h.example.com", false},
	{"RFC3261 19.1.4 method parameter in one only never matches",
		"sip:h.example.com;method=INVITE", "sip:h.example.com", false},
	{"RFC3261 19.1.4 maddr parameter in one only never matches",
		"sip:h.example.com", "sip:h.example.com;maddr=192.0.2.1", false},
	{"RFC3261 19.1.4 repeated parameter compares by its first value",
		"sip:h.example.com;x=1;x", "sip:h.example.com;x=1;x", true},
	{"RFC3261 19.1.4 lr in one only is ignored",
		"sip:p.example.com;lr", "sip:p.example.com", true},
	{"RFC3261 19.1.4 header values must match",
		"sip:alice@atlanta.com?subject=a", "sip:alice@atlanta.com?subject=b", false},
	{"RFC3261 19.1.4 header names are case-insensitive",
		"sip:alice@atlanta.com?subject=project%20x", "sip:alice@atlanta.com?Subject=project%20x", true},
	{"RFC3261 19.1.4 escaped and unescaped header value",
		"sip:alice@atlanta.com?subject=%70roject", "sip:alice@atlanta.com?subject=project", true},
	{"RFC3261 19.1.4 explicit default port",
		"sip:alice@atlanta.com:5060", "sip:alice@atlanta.com:5060", true},
	{"RFC3261 19.1.4 different ports",
		"sip:alice@atlanta.com:5060", "sip:alice@atlanta.com:5070", false},
	{"RFC4475 3.1.1.4 escnull distinct users",
		"sip:%00@host5.example.com", "sip:%00%00@host5.example.com", false},
	{"RFC3261 19.1.4 escaped user in one only",
		"sip:I%20have%20spaces@example.net", "sip:I%20have%20spaces@example.net", true},
	{"RFC3261 19.1.4 tel and sip never equivalent",
		"tel:+15551234", "sip:+15551234@example.com", false},
	{"RFC3966 4 tel numbers", "tel:+15551234", "TEL:+15551234", true},
	{"RFC3966 4 different tel numbers", "tel:+15551234", "tel:+15551235", false},
	{"RFC3986 6.2.2.1 opaque URIs compare by text", "urn:service:sos", "URN:service:sos", true},
	{"RFC3986 6.2 different opaque URIs", "urn:service:sos", "urn:service:sos.fire", false},
}

func TestURIEqual(t *testing.T) {
	for _, tt := range uriEqualCases {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseURI(tt.a)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.a, err)
			}
			b, err := ParseURI(tt.b)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.b, err)
			}
			if got := a.Equal(&b); got != tt.equal {
				t.Errorf("%q.Equal(%q) = %v, want %v", tt.a, tt.b, got, tt.equal)
			}
			if got := b.Equal(&a); got != tt.equal {
				t.Errorf("%q.Equal(%q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.equal)
			}
			if !a.Equal(&a) || !b.Equal(&b) {
				t.Error("not reflexive")
			}
		})
	}
}
