package sip

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// crlf joins lines with CRLF, as they travel on the wire.
func crlf(lines ...string) string { return strings.Join(lines, "\r\n") }

// The mandatory header fields of a request (RFC 3261 §8.1.1), one per line,
// keyed by canonical name so a test can replace or drop one.
var mandatory = []struct{ name, line string }{
	{"Via", "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"},
	{"Max-Forwards", "Max-Forwards: 70"},
	{"To", "To: Bob <sip:bob@biloxi.example.com>"},
	{"From", `From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774`},
	{"Call-ID", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com"},
	{"CSeq", "CSeq: 314159 INVITE"},
}

// headers returns the mandatory header lines without the named ones,
// followed by extra lines.
func headers(without []string, extra ...string) []string {
	var out []string
	for _, h := range mandatory {
		if !slices.Contains(without, h.name) {
			out = append(out, h.line)
		}
	}
	return append(out, extra...)
}

// invite builds an INVITE with the mandatory header fields, the extra
// header lines, the empty line and body.
func invite(body string, extra ...string) string {
	return crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers(nil, extra...)...), "", body)...)
}

// response builds a response to the mandatory header fields.
func response(status string, extra ...string) string {
	lines := append([]string{status}, headers([]string{"Max-Forwards"}, extra...)...)
	return crlf(append(lines, "", "")...)
}

func mustParse(t *testing.T, s string) Message {
	t.Helper()
	m, err := ParseString(s)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, s)
	}
	return m
}

func mustRequest(t *testing.T, s string) *Request {
	t.Helper()
	r, ok := mustParse(t, s).(*Request)
	if !ok {
		t.Fatal("not a request")
	}
	return r
}

// mustFail parses s, expects a *ParseError and returns it.
func mustFail(t *testing.T, s string) *ParseError {
	t.Helper()
	m, err := ParseString(s)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Parse error = %v (%T), want a *ParseError\n%s", err, err, s)
	}
	if pe.Msg != m {
		t.Fatalf("ParseError.Msg differs from the returned message")
	}
	if !strings.HasPrefix(pe.Error(), "sip: ") || pe.Reason == "" {
		t.Fatalf("Error() = %q", pe.Error())
	}
	return pe
}

// meaning renders what a parsed message says as comparable lines: the start
// line, every typed header, the raw fields in order and the body. Two
// messages with the same meaning are interchangeable for every layer above
// the parser.
func meaning(m Message) []string {
	var out []string
	add := func(k string, v any) { out = append(out, fmt.Sprintf("%s: %q", k, v)) }
	switch m := m.(type) {
	case *Request:
		add("method", m.Method)
		add("uri", m.URI.String())
		add("version", m.Version)
	case *Response:
		add("version", m.Version)
		add("status", strconv.Itoa(m.StatusCode))
		add("reason", m.Reason)
	}
	h := m.Head()
	for i := range h.Via {
		add(fmt.Sprintf("via[%d]", i), h.Via[i].String())
	}
	add("from", h.From.String())
	add("to", h.To.String())
	add("call-id", h.CallID)
	add("cseq", fmt.Sprint(h.CSeq.Seq, " ", h.CSeq.Method))
	add("max-forwards", h.MaxForwards)
	add("content-type", h.ContentType)
	for i := range h.Contact {
		add(fmt.Sprintf("contact[%d]", i), h.Contact[i].String())
	}
	for i := range h.Route {
		add(fmt.Sprintf("route[%d]", i), h.Route[i].String())
	}
	for i := range h.RecordRoute {
		add(fmt.Sprintf("record-route[%d]", i), h.RecordRoute[i].String())
	}
	for i, f := range h.Fields {
		add(fmt.Sprintf("field[%d] %q", i, f.Name), f.Value)
	}
	add("body", string(m.Payload()))
	return out
}

// meaningDiff returns "" when a and b mean the same, or the differing lines.
func meaningDiff(a, b Message) string {
	la, lb := meaning(a), meaning(b)
	var d strings.Builder
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			fmt.Fprintf(&d, "- %s\n+ %s\n", x, y)
		}
	}
	return d.String()
}

// checkRoundTrip writes m out, parses it again and checks that it says the
// same thing, and that writing is a fixed point.
func checkRoundTrip(t *testing.T, m Message) {
	t.Helper()
	out := m.AppendTo(nil)
	if s := m.String(); s != string(out) {
		t.Errorf("String() differs from AppendTo")
	}
	m2, err := Parse(out)
	if err != nil {
		t.Fatalf("written message does not parse: %v\n%s", err, out)
	}
	if d := meaningDiff(m, m2); d != "" {
		t.Errorf("a message written back out changed its meaning:\n%s\nwritten:\n%s", d, out)
	}
	// A parsed message (its Fields are never nil) must come back identical;
	// one built by hand only with the same meaning, then identical.
	if m.Head().Fields != nil && !reflect.DeepEqual(m, m2) {
		t.Errorf("typed message changed through a write\n got %#v\nwant %#v", m2, m)
	}
	out2 := m2.AppendTo(nil)
	if !bytes.Equal(out, out2) {
		t.Errorf("writing is not a fixed point:\n%s\n---\n%s", out, out2)
	}
	if m3, err := Parse(out2); err != nil || !reflect.DeepEqual(m2, m3) {
		t.Errorf("second round trip changed the message: %v", err)
	}
}

func TestParseRequestLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		method  string
		uri     string
		version string
	}{
		{"RFC3261 7.1 Request-Line", "INVITE sip:bob@biloxi.example.com SIP/2.0",
			"INVITE", "sip:bob@biloxi.example.com", "SIP/2.0"},
		{"RFC4475 3.1.2.9 lwsstart extra SP between elements is accepted", "INVITE  sip:user@example.com  SIP/2.0",
			"INVITE", "sip:user@example.com", "SIP/2.0"},
		{"RFC4475 3.1.2.10 trws trailing SP is accepted", "OPTIONS sip:remote-target@example.com SIP/2.0  ",
			"OPTIONS", "sip:remote-target@example.com", "SIP/2.0"},
		{"RFC3261 7.1 SIP-Version is case-insensitive", "INVITE sip:bob@biloxi.example.com sip/2.0",
			"INVITE", "sip:bob@biloxi.example.com", "SIP/2.0"},
		{"RFC4475 3.1.2.16 badvers other versions parse, the server answers 505", "OPTIONS sip:t.watson@example.org SIP/7.0",
			"OPTIONS", "sip:t.watson@example.org", "SIP/7.0"},
		{"RFC4475 3.1.1.2 intmeth method of unusual token characters", "!interesting-Method0123456789_*+`.%indeed'~ sip:u@example.com SIP/2.0",
			"!interesting-Method0123456789_*+`.%indeed'~", "sip:u@example.com", "SIP/2.0"},
		{"RFC4475 3.1.1.5 esc02 % in a method is not an escape", "RE%47IST%45R sip:registrar.example.com SIP/2.0",
			"RE%47IST%45R", "sip:registrar.example.com", "SIP/2.0"},
		{"RFC3261 7.1 methods are case-sensitive", "invite sip:bob@biloxi.example.com SIP/2.0",
			"invite", "sip:bob@biloxi.example.com", "SIP/2.0"},
		{"RFC5118 4.1 IPv6 Request-URI", "REGISTER sip:[2001:db8::10] SIP/2.0",
			"REGISTER", "sip:[2001:db8::10]", "SIP/2.0"},
		{"RFC5118 4.4 IPv6 Request-URI with port", "REGISTER sip:[2001:db8::10]:5070 SIP/2.0",
			"REGISTER", "sip:[2001:db8::10]:5070", "SIP/2.0"},
		{"RFC4475 3.3.2 unkscm unknown scheme parses, the server answers 416", "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
			"OPTIONS", "nobodyKnowsThisScheme:totallyopaquecontent", "SIP/2.0"},
		{"RFC4475 3.1.2.11 escruri headers in the Request-URI parse, the server rejects them", "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
			"INVITE", "sip:user@example.com?Route=%3Csip:example.com%3E", "SIP/2.0"},
		{"RFC3261 19.1.1 tel Request-URI", "INVITE tel:+15551234 SIP/2.0",
			"INVITE", "tel:+15551234", "SIP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRequest(t, crlf(append(append([]string{tt.line}, headers(nil)...), "", "")...))
			if r.Method != tt.method || r.URI.String() != tt.uri || r.Version != tt.version {
				t.Errorf("got %q %q %q, want %q %q %q", r.Method, r.URI.String(), r.Version, tt.method, tt.uri, tt.version)
			}
			if got := string(r.AppendTo(nil)); !strings.HasPrefix(got, tt.method+" "+tt.uri+" "+tt.version+"\r\n") {
				t.Errorf("written Request-Line is not strict: %q", strings.SplitN(got, "\r\n", 2)[0])
			}
		})
	}
}

func TestParseRequestLineInvalid(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		partial bool // Msg is a partial *Request: the method was usable
	}{
		{"RFC4475 3.1.2.8 lwsruri SP inside the Request-URI", "INVITE sip:user@example.com; lr SIP/2.0", true},
		{"RFC4475 3.1.2.8 SP between user and host", "INVITE sip:user @example.com SIP/2.0", true},
		{"RFC4475 3.1.2.7 ltgtruri <> around the Request-URI", "INVITE <sip:user@example.com> SIP/2.0", true},
		{"RFC5118 4.2 ipv6-bad unbracketed IPv6 Request-URI", "REGISTER sip:2001:db8::10 SIP/2.0", true},
		{"RFC3261 7.1 no SIP-Version (rfc4475-test)", "INVITE sip:alan@jasomi.com", true},
		{"RFC3261 7.1 no Request-URI", "INVITE", true},
		{"RFC3261 7.1 SIP-Version without minor", "INVITE sip:bob@biloxi.example.com SIP/2", true},
		{"RFC3261 7.1 SIP-Version with three numbers", "INVITE sip:bob@biloxi.example.com SIP/2.0.1", true},
		{"RFC3261 7.1 other protocol", "GET sip:bob@biloxi.example.com HTTP/1.1", true},
		{"RFC3261 7.1 method is not a token", "INV@TE sip:bob@biloxi.example.com SIP/2.0", false},
		{"RFC3261 7.1 empty start line", "", false},
		{"RFC3261 7.1 bad Request-URI port", "INVITE sip:bob@biloxi.example.com:0 SIP/2.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe := mustFail(t, crlf(append(append([]string{tt.line}, headers(nil)...), "", "")...))
			if strings.Contains(tt.name, "lwsruri") && strings.Contains(pe.Reason, "Version") {
				t.Errorf("embedded LWS read as a bad version (would be a 505): %q", pe.Reason)
			}
			if !tt.partial {
				if pe.Msg != nil {
					t.Errorf("Msg = %#v, want nil for an unusable start line", pe.Msg)
				}
				return
			}
			r, ok := pe.Msg.(*Request)
			if !ok {
				t.Fatalf("Msg = %#v, want a partial *Request", pe.Msg)
			}
			if len(r.Via) != 1 || r.Via[0].Branch() != "z9hG4bK776asdhds" {
				t.Errorf("partial request has no usable Via: %#v", r.Via)
			}
		})
	}
}

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		version string
		code    int
		reason  string
	}{
		{"RFC3261 7.2 Status-Line", "SIP/2.0 200 OK", "SIP/2.0", 200, "OK"},
		{"RFC4475 3.1.1.13 noreason empty reason phrase", "SIP/2.0 100 ", "SIP/2.0", 100, ""},
		{"RFC3261 21 reason phrase with spaces", "SIP/2.0 181 Call Is Being Forwarded", "SIP/2.0", 181, "Call Is Being Forwarded"},
		{"RFC4475 3.1.1.12 unreason unusual UTF-8 reason phrase",
			"SIP/2.0 200 = 2**3 * 5**2 \xd0\xbd\xd0\xbe \xd1\x81\xd1\x82\xd0\xbe",
			"SIP/2.0", 200, "= 2**3 * 5**2 \xd0\xbd\xd0\xbe \xd1\x81\xd1\x82\xd0\xbe"},
		{"RFC3261 7.2 lowest status code", "SIP/2.0 100 Trying", "SIP/2.0", 100, "Trying"},
		{"RFC3261 7.2 highest status code", "SIP/2.0 699 Whatever", "SIP/2.0", 699, "Whatever"},
		{"RFC3261 7.2 unknown code of a known class", "SIP/2.0 499 Custom", "SIP/2.0", 499, "Custom"},
		{"RFC3261 7.2 SIP-Version is case-insensitive", "sip/2.0 404 Not Found", "SIP/2.0", 404, "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, response(tt.line))
			r, ok := m.(*Response)
			if !ok {
				t.Fatalf("got %T, want *Response", m)
			}
			if r.Version != tt.version || r.StatusCode != tt.code || r.Reason != tt.reason {
				t.Errorf("got %q %d %q, want %q %d %q", r.Version, r.StatusCode, r.Reason, tt.version, tt.code, tt.reason)
			}
			checkRoundTrip(t, r)
		})
	}
}

func TestParseStatusLineInvalid(t *testing.T) {
	tests := []struct {
		name string
		line string
	}{
		{"RFC4475 3.1.2.19 bigcode overlarge response code", "SIP/2.0 4294967301 better not break the receiver"},
		{"RFC3261 7.2 code below 100", "SIP/2.0 099 Too Low"},
		{"RFC3261 7.2 code 000", "SIP/2.0 000 Zero"},
		{"RFC3261 7.2 code above 699", "SIP/2.0 700 Too High"},
		{"RFC3261 7.2 code 999", "SIP/2.0 999 Too High"},
		{"RFC3261 7.2 two-digit code", "SIP/2.0 20 OK"},
		{"RFC3261 7.2 four-digit code", "SIP/2.0 2000 OK"},
		{"RFC3261 7.2 letters in the code", "SIP/2.0 2OO OK"},
		{"RFC3261 7.2 negative code", "SIP/2.0 -99 OK"},
		{"RFC3261 7.2 no code", "SIP/2.0"},
		{"RFC3261 7.2 no code after SP", "SIP/2.0 "},
		{"RFC3261 7.2 bad version", "SIP/2 200 OK"},
		{"RFC3261 7.2 bad version digits", "SIP/x.y 200 OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe := mustFail(t, response(tt.line))
			if pe.Msg != nil {
				t.Errorf("Msg = %#v, want nil: a response without a usable Status-Line is dropped", pe.Msg)
			}
		})
	}
}

// TestCompactForms checks every compact form of RFC 3261 §7.3.3 and of the
// IANA registry, in both cases, against the canonical name.
func TestCompactForms(t *testing.T) {
	tests := []struct {
		compact   string
		canonical string
		value     string
		check     func(r *Request) string // returns what the typed field holds, for hot headers
	}{
		{"i", "Call-ID", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com",
			func(r *Request) string { return r.CallID }},
		{"m", "Contact", `"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7;expires=3600`,
			func(r *Request) string { return r.Contact[0].String() }},
		{"e", "Content-Encoding", "gzip", nil},
		{"l", "Content-Length", "4",
			func(r *Request) string { return strconv.Itoa(len(r.Body)) }},
		{"c", "Content-Type", "text/html; charset=ISO-8859-4",
			func(r *Request) string { return r.ContentType }},
		{"f", "From", `"A. G. Bell" <sip:agb@bell-telephone.com>;tag=a48s`,
			func(r *Request) string { return r.From.String() }},
		{"s", "Subject", "Need more boxes", nil},
		{"k", "Supported", "100rel, timer", nil},
		{"t", "To", `The Operator <sip:operator@cs.columbia.edu>;tag=287447`,
			func(r *Request) string { return r.To.String() }},
		{"v", "Via", "SIP/2.0/UDP erlang.bell-telephone.com:5060;branch=z9hG4bK87asdks7",
			func(r *Request) string { return r.Via[0].String() }},
		{"o", "Event", "presence;id=1", nil},
		{"u", "Allow-Events", "presence, dialog", nil},
		{"r", "Refer-To", "<sip:carol@cleveland.example.org>", nil},
		{"b", "Referred-By", "<sip:referrer@referrer.example>", nil},
		{"x", "Session-Expires", "4000;refresher=uac", nil},
		{"y", "Identity", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln;info=<https://cert.example.org/passport.cer>", nil},
		{"a", "Accept-Contact", "*;audio;require", nil},
		{"j", "Reject-Contact", "*;actor=\"msg-taker\";video", nil},
		{"d", "Request-Disposition", "proxy, recurse, parallel", nil},
	}
	for _, tt := range tests {
		for _, letter := range []string{tt.compact, strings.ToUpper(tt.compact)} {
			name := fmt.Sprintf("RFC3261 7.3.3 compact form %s is %s", letter, tt.canonical)
			t.Run(name, func(t *testing.T) {
				if got := CanonicalName(letter); got != tt.canonical {
					t.Errorf("CanonicalName(%q) = %q, want %q", letter, got, tt.canonical)
				}
				line := letter + ": " + tt.value
				body := "abcd"
				var r *Request
				switch tt.canonical {
				case "Content-Length":
					body = "abcdEXTRA" // the compact Content-Length frames the body
					r = mustRequest(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers(nil, line)...), "", body)...))
				default:
					r = mustRequest(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{tt.canonical}, line)...), "", body)...))
				}
				if tt.check != nil {
					want := tt.value
					if tt.canonical == "Contact" || tt.canonical == "From" || tt.canonical == "To" || tt.canonical == "Via" {
						want = normalise(t, tt.canonical, tt.value)
					}
					if got := tt.check(r); got != want {
						t.Errorf("typed %s = %q, want %q", tt.canonical, got, want)
					}
					if tt.canonical != "Content-Length" {
						if got := r.Get(letter); got != want {
							t.Errorf("Get(%q) = %q, want %q", letter, got, want)
						}
						if got := r.Get(tt.canonical); got != want {
							t.Errorf("Get(%q) = %q, want %q", tt.canonical, got, want)
						}
					}
					return
				}
				// Raw header fields: the field keeps the compact name as
				// written, and every spelling of the name finds it.
				if len(r.Fields) != 1 || r.Fields[0].Name != letter || r.Fields[0].Value != tt.value {
					t.Fatalf("Fields = %#v", r.Fields)
				}
				for _, n := range []string{letter, tt.canonical, strings.ToUpper(tt.canonical), strings.ToLower(tt.canonical)} {
					if got := r.Get(n); got != tt.value {
						t.Errorf("Get(%q) = %q, want %q", n, got, tt.value)
					}
					if !r.Has(n) {
						t.Errorf("Has(%q) = false", n)
					}
				}
				var want []string
				splitComma(tt.value, func(e string) bool { want = append(want, e); return true })
				if got := r.Values(tt.canonical); !slices.Equal(got, want) {
					t.Errorf("Values(%q) = %q, want %q", tt.canonical, got, want)
				}
				if !strings.Contains(r.String(), "\r\n"+line+"\r\n") {
					t.Errorf("written message lost %q:\n%s", line, r.String())
				}
			})
		}
	}
}

// normalise returns how a hot header value is written after parsing.
func normalise(t *testing.T, name, value string) string {
	t.Helper()
	if name == "Via" {
		v, err := parseVia(value)
		if err != nil {
			t.Fatal(err)
		}
		return v.String()
	}
	a, err := ParseAddress(value)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

func TestHeaderNamesAreCaseInsensitive(t *testing.T) {
	r := mustRequest(t, crlf(
		"INVITE sip:bob@biloxi.example.com SIP/2.0",
		"vIa: SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
		"VIA  : SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
		"mAx-FoRwArDs: 0068",
		"TO: <sip:bob@biloxi.example.com>",
		"from : <sip:alice@atlanta.example.com>;tag=1",
		"CALL-ID: abc",
		"cseq: 0009 INVITE",
		"CONTACT: <sip:alice@192.0.2.1>",
		"content-TYPE: application/sdp",
		"sUbJeCt: hello",
		"X-Custom: a",
		"x-custom: b",
		"CONTENT-length: 2",
		"",
		"v=",
	))
	if len(r.Via) != 2 || r.Via[0].Host != "a.example.com" || r.Via[1].Host != "b.example.com" {
		t.Errorf("Via = %v", r.Via)
	}
	if r.MaxForwards != 68 || r.To.URI.User != "bob" || r.From.Tag() != "1" || r.CallID != "abc" ||
		r.CSeq != (CSeq{9, "INVITE"}) || len(r.Contact) != 1 || r.ContentType != "application/sdp" || string(r.Body) != "v=" {
		t.Errorf("typed headers not recognised: %#v", r.Header)
	}
	for _, n := range []string{"Subject", "SUBJECT", "subject", "s", "S"} {
		if got := r.Get(n); got != "hello" {
			t.Errorf("Get(%q) = %q, want hello", n, got)
		}
	}
	for _, n := range []string{"X-Custom", "x-CUSTOM"} {
		if got := r.Values(n); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("Values(%q) = %q, want [a b]", n, got)
		}
	}
	checkRoundTrip(t, r)
}

func TestMethodsAreCaseSensitive(t *testing.T) {
	tests := []struct {
		name   string
		method string
		known  bool
	}{
		{"RFC3261 7.1 INVITE", "INVITE", true},
		{"RFC3261 7.1 invite is not INVITE", "invite", false},
		{"RFC3261 7.1 Invite is not INVITE", "Invite", false},
		{"RFC4475 3.1.2.18 NEWMETHOD is unknown", "NEWMETHOD", false},
		{"RFC4475 3.1.1.5 escaped REGISTER is not REGISTER", "RE%47IST%45R", false},
	}
	for _, m := range KnownMethods {
		tests = append(tests, struct {
			name   string
			method string
			known  bool
		}{"RFC3261 7.1 known method " + m, m, true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsKnownMethod(tt.method); got != tt.known {
				t.Errorf("IsKnownMethod(%q) = %v, want %v", tt.method, got, tt.known)
			}
			r := mustRequest(t, crlf(append(append([]string{tt.method + " sip:bob@biloxi.example.com SIP/2.0"},
				headers([]string{"CSeq"}, "CSeq: 1 "+tt.method)...), "", "")...))
			if r.Method != tt.method || r.CSeq.Method != tt.method {
				t.Errorf("Method = %q, CSeq method = %q, want %q as written", r.Method, r.CSeq.Method, tt.method)
			}
			if r.IsInvite() != (tt.method == INVITE) {
				t.Errorf("IsInvite() = %v", r.IsInvite())
			}
		})
	}
}

// TestMultipleValues covers RFC 3261 §7.3.1: a header field that takes a
// comma-separated list may be written as several values in one row, as
// several rows, or both, and the order of the values carries meaning.
func TestMultipleValues(t *testing.T) {
	r := mustRequest(t, crlf(
		"INVITE sip:bob@biloxi.example.com SIP/2.0",
		"Via: SIP/2.0/UDP v1.example.com;branch=z9hG4bK1, SIP/2.0/TCP v2.example.com;branch=z9hG4bK2",
		"Route: <sip:r1.example.com;lr>,<sip:r2.example.com;lr>",
		"v: SIP/2.0/UDP v3.example.com;branch=z9hG4bK3",
		"Record-Route: <sip:rr1.example.com;lr>",
		"Via: SIP/2.0/UDP v4.example.com;branch=z9hG4bK4,SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bK5",
		"Route: <sip:r3.example.com;lr>",
		"Record-Route: <sip:rr2.example.com;lr>, <sip:rr3.example.com;lr>",
		"Max-Forwards: 70",
		"To: <sip:bob@biloxi.example.com>",
		"From: <sip:alice@atlanta.example.com>;tag=1",
		"Call-ID: abc",
		"CSeq: 1 INVITE",
		`Contact: "Watson, Thomas" <sip:c1@example.com>;q=0.7, <sip:c2@example.com;transport=tcp>`,
		"m: sip:c3@example.com;expires=60",
		"Supported: 100rel, timer",
		"Allow: INVITE",
		"Supported: replaces",
		"Allow: ACK, \"quoted, comma\", <sip:x,y>",
		"Content-Length: 0",
		"", ""))
	var vias []string
	for _, v := range r.Via {
		vias = append(vias, v.Host)
	}
	if want := []string{"v1.example.com", "v2.example.com", "v3.example.com", "v4.example.com", "[2001:db8::5]"}; !slices.Equal(vias, want) {
		t.Errorf("RFC3261 7.3.1 Via order: %q, want %q", vias, want)
	}
	addrs := func(as []Address) (out []string) {
		for _, a := range as {
			out = append(out, a.String())
		}
		return out
	}
	if got, want := addrs(r.Route), []string{"<sip:r1.example.com;lr>", "<sip:r2.example.com;lr>", "<sip:r3.example.com;lr>"}; !slices.Equal(got, want) {
		t.Errorf("RFC3261 20.34 Route order: %q, want %q", got, want)
	}
	if got, want := addrs(r.RecordRoute), []string{"<sip:rr1.example.com;lr>", "<sip:rr2.example.com;lr>", "<sip:rr3.example.com;lr>"}; !slices.Equal(got, want) {
		t.Errorf("RFC3261 20.30 Record-Route order: %q, want %q", got, want)
	}
	if got, want := addrs(r.Contact), []string{`"Watson, Thomas" <sip:c1@example.com>;q=0.7`, "<sip:c2@example.com;transport=tcp>", "<sip:c3@example.com>;expires=60"}; !slices.Equal(got, want) {
		t.Errorf("RFC3261 20.10 Contact order: %q, want %q", got, want)
	}
	if got, want := r.Values("Supported"), []string{"100rel", "timer", "replaces"}; !slices.Equal(got, want) {
		t.Errorf("RFC3261 7.3.1 Values(Supported) = %q, want %q", got, want)
	}
	if got, want := r.Values("Allow"), []string{"INVITE", "ACK", `"quoted, comma"`, "<sip:x,y>"}; !slices.Equal(got, want) {
		t.Errorf("RFC3261 7.3.1 Values(Allow) = %q, want %q", got, want)
	}
	if got := r.Get("Supported"); got != "100rel, timer" {
		t.Errorf("Get(Supported) = %q, want the first row", got)
	}
	if got := r.Get("Via"); got != "SIP/2.0/UDP v1.example.com;branch=z9hG4bK1" {
		t.Errorf("Get(Via) = %q, want the top Via", got)
	}
	if got := r.Get("Route"); got != "<sip:r1.example.com;lr>" {
		t.Errorf("Get(Route) = %q, want the first Route", got)
	}
	if !r.HasOption("Supported", "TIMER") || r.HasOption("Supported", "path") {
		t.Error("HasOption: option tags compare case-insensitively and must be listed")
	}
	checkRoundTrip(t, r)
	// The rows are written one value per row, in order.
	out := r.String()
	for _, want := range []string{"v1.example.com", "v2.example.com", "v3.example.com", "v4.example.com", "[2001:db8::5]"} {
		i := strings.Index(out, want)
		if i < 0 {
			t.Fatalf("written message lost %s", want)
		}
		out = out[i:]
	}
}

func TestContactWildcard(t *testing.T) {
	r := mustRequest(t, crlf(append(append([]string{"REGISTER sip:registrar.biloxi.example.com SIP/2.0"},
		headers([]string{"CSeq"}, "CSeq: 2 REGISTER", "Contact: *", "Expires: 0")...), "", "")...))
	if len(r.Contact) != 1 || !r.Contact[0].Wildcard {
		t.Fatalf("RFC3261 10.2.2 Contact: * = %#v", r.Contact)
	}
	if got := r.Get("m"); got != "*" {
		t.Errorf("Get(m) = %q, want *", got)
	}
	checkRoundTrip(t, r)
	if !strings.Contains(r.String(), "\r\nContact: *\r\n") {
		t.Errorf("wildcard not written:\n%s", r.String())
	}
	// The wildcard is a Contact thing only.
	mustFail(t, invite("", "Route: *"))
}

func TestLineFolding(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		check func(t *testing.T, r *Request)
	}{
		{"RFC3261 7.3.1 folded raw value is unfolded by Get and kept by Fields",
			[]string{"Subject: I know you're there,", "     pick up the phone", "\tand talk to me!"},
			func(t *testing.T, r *Request) {
				if got, want := r.Get("Subject"), "I know you're there,     pick up the phone\tand talk to me!"; got != want {
					t.Errorf("Get = %q, want %q", got, want)
				}
				if got, want := r.Fields[0].Value, "I know you're there,\r\n     pick up the phone\r\n\tand talk to me!"; got != want {
					t.Errorf("Value = %q, want %q", got, want)
				}
			}},
		{"RFC4475 3.1.1.1 folded CSeq",
			[]string{"cseq: 0009", "  INVITE"},
			func(t *testing.T, r *Request) {
				if r.CSeq != (CSeq{9, "INVITE"}) {
					t.Errorf("CSeq = %v", r.CSeq)
				}
			}},
		{"RFC4475 3.1.1.1 folded From parameters",
			[]string{`from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>`, "  ;", "  tag = 98asjd8"},
			func(t *testing.T, r *Request) {
				if r.From.Tag() != "98asjd8" || r.From.DisplayName() != `J Rosenberg \"` {
					t.Errorf("From = %#v", r.From)
				}
			}},
		{"RFC4475 3.1.1.1 folded To with value on the next line",
			[]string{"TO :", " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"},
			func(t *testing.T, r *Request) {
				if r.To.String() != "<sip:vivekg@chair-dnrc.example.com>;tag=1918181833n" {
					t.Errorf("To = %q", r.To.String())
				}
			}},
		{"RFC4475 3.1.1.1 folded Via list",
			[]string{"v:  SIP  / 2.0  / TCP     spindle.example.com   ;", "  branch  =   z9hG4bK9ikj8  ,", " SIP  /    2.0   / UDP  192.168.255.111   ; branch=", " z9hG4bK30239"},
			func(t *testing.T, r *Request) {
				if len(r.Via) != 2 || r.Via[0].String() != "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8" ||
					r.Via[1].String() != "SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239" {
					t.Errorf("Via = %v", r.Via)
				}
			}},
		{"RFC4475 3.1.1.1 folded Contact with LWS around parameters",
			[]string{`m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =`, "      newvalue ;", "  secondparam ; q = 0.33"},
			func(t *testing.T, r *Request) {
				if len(r.Contact) != 1 || r.Contact[0].Params != ";newparam=newvalue;secondparam;q=0.33" {
					t.Errorf("Contact = %#v", r.Contact)
				}
			}},
		{"RFC4475 3.1.1.1 folded Route with value on the next line",
			[]string{"Route:", " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>"},
			func(t *testing.T, r *Request) {
				if len(r.Route) != 1 || r.Route[0].URI.Params != ";lr;unknownwith=value;unknown-no-value" {
					t.Errorf("Route = %#v", r.Route)
				}
			}},
		{"RFC3261 7.3.1 fold with bare LF",
			[]string{"Subject: a\n b"},
			func(t *testing.T, r *Request) {
				if got := r.Get("Subject"); got != "a b" {
					t.Errorf("Get = %q", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var drop []string
			for _, l := range tt.lines {
				if c := CanonicalName(strings.TrimSpace(strings.SplitN(l, ":", 2)[0])); c != "" {
					drop = append(drop, c)
				}
			}
			r := mustRequest(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers(drop, tt.lines...)...), "", "")...))
			tt.check(t, r)
			checkRoundTrip(t, r)
		})
	}
	t.Run("RFC3261 7.3.1 continuation line without a header field", func(t *testing.T) {
		mustFail(t, crlf("INVITE sip:bob@biloxi.example.com SIP/2.0", " folded", crlf(headers(nil)...), "", ""))
	})
}

func TestMessageFraming(t *testing.T) {
	t.Run("RFC3261 7.5 CRLFs before the start line are ignored", func(t *testing.T) {
		r := mustRequest(t, "\r\n\r\n"+invite(""))
		if r.Method != "INVITE" {
			t.Errorf("Method = %q", r.Method)
		}
	})
	t.Run("RFC3261 7.5 bare LF line ends are accepted", func(t *testing.T) {
		s := strings.ReplaceAll(invite("v=0\r\n", "Content-Length: 4"), "\r\n", "\n")
		r := mustRequest(t, s)
		if r.CallID != "a84b4c76e66710@pc33.atlanta.example.com" || string(r.Body) != "v=0\n" {
			t.Errorf("CallID %q, body %q", r.CallID, r.Body)
		}
		checkRoundTrip(t, r)
	})
	t.Run("RFC4475 3.1.2.15 baddn no empty line at the end of a datagram", func(t *testing.T) {
		r := mustRequest(t, crlf(append([]string{"OPTIONS sip:bob@biloxi.example.com SIP/2.0"}, headers(nil, "l: 0")...)...))
		if r.Body != nil || r.CallID == "" {
			t.Errorf("body %q, Call-ID %q", r.Body, r.CallID)
		}
	})
	for _, tt := range []struct{ name, in string }{
		{"RFC3261 7 empty message", ""},
		{"RFC3261 7.5 only CRLFs", "\r\n\r\n"},
		{"RFC3261 7 no line end at all", "INVITE sip:bob@biloxi.example.com SIP/2.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if pe := mustFail(t, tt.in); pe.Msg != nil {
				t.Errorf("Msg = %#v, want nil", pe.Msg)
			}
		})
	}
	t.Run("RFC3261 7 Parse of empty bytes", func(t *testing.T) {
		if m, err := Parse(nil); err == nil || m != nil {
			t.Errorf("Parse(nil) = %v, %v", m, err)
		}
	})
	t.Run("RFC3261 7.3.1 header line without a colon", func(t *testing.T) {
		pe := mustFail(t, invite("", "Foobar roobar"))
		if pe.Msg == nil {
			t.Error("Msg = nil")
		}
	})
	t.Run("RFC3261 7.3.1 header name that is not a token", func(t *testing.T) {
		mustFail(t, invite("", "Bad Name: x"))
		mustFail(t, invite("", ": x"))
	})
}

func TestBody(t *testing.T) {
	tests := []struct {
		name    string
		extra   []string
		body    string
		want    string
		wantErr bool
	}{
		{"RFC3261 20.14 body of exactly Content-Length octets", []string{"Content-Length: 4"}, "abcd", "abcd", false},
		{"RFC3261 18.3 octets after Content-Length are ignored", []string{"Content-Length: 4"}, "abcdEXTRA", "abcd", false},
		{"RFC4475 3.1.1.8 dblreq Content-Length 0 with trailing octets", []string{"Content-Length: 0"}, "INVITE sip:x SIP/2.0\r\n\r\n", "", false},
		{"RFC3261 18.3 no Content-Length on UDP: the rest of the datagram", nil, "v=0\r\nrest\r\n", "v=0\r\nrest\r\n", false},
		{"RFC3261 18.3 no Content-Length and no body", nil, "", "", false},
		{"RFC3261 20.14 leading zeros", []string{"l: 0004"}, "abcdef", "abcd", false},
		{"RFC3261 20.14 binary body with NUL and CRLF", []string{"Content-Length: 6"}, "\x00\r\n\r\n\xff", "\x00\r\n\r\n\xff", false},
		{"RFC3261 20.14 same Content-Length twice", []string{"Content-Length: 4", "l: 4"}, "abcd", "abcd", false},
		{"RFC4475 3.1.2.2 clerr Content-Length larger than the body", []string{"Content-Length: 9999"}, "abcd", "abcd", true},
		{"RFC4475 3.1.2.3 ncl negative Content-Length", []string{"Content-Length: -999"}, "abcd", "abcd", true},
		{"RFC4475 3.1.2.3 Content-Length: five", []string{"Content-Length: five"}, "abcd", "abcd", true},
		{"RFC4475 3.1.2.3 empty Content-Length", []string{"Content-Length:"}, "abcd", "abcd", true},
		{"RFC4475 3.1.2.4 overlarge Content-Length", []string{"Content-Length: 99999999999999999999"}, "abcd", "abcd", true},
		{"RFC4475 3.3.9 mcl01 differing Content-Length values", []string{"Content-Length: 13", "Content-Length: 5"}, "There's no way to know", "There's no wa", true},
		{"RFC4475 3.1.2.4 Content-Length with a list", []string{"Content-Length: 4, 4"}, "abcd", "abcd", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := invite(tt.body, tt.extra...)
			var r *Request
			if tt.wantErr {
				pe := mustFail(t, s)
				var ok bool
				if r, ok = pe.Msg.(*Request); !ok {
					t.Fatalf("Msg = %#v, want the partial request", pe.Msg)
				}
				if !strings.Contains(pe.Reason, "Content-Length") {
					t.Errorf("Reason = %q, want it to name Content-Length", pe.Reason)
				}
			} else {
				r = mustRequest(t, s)
			}
			if string(r.Body) != tt.want {
				t.Errorf("Body = %q, want %q", r.Body, tt.want)
			}
			if tt.want == "" && r.Body != nil {
				t.Errorf("empty Body is %#v, want nil", r.Body)
			}
			if tt.wantErr {
				return
			}
			checkRoundTrip(t, r)
			if want := "\r\nContent-Length: " + strconv.Itoa(len(tt.want)) + "\r\n\r\n"; !strings.Contains(r.String(), want) {
				t.Errorf("written Content-Length is not computed from the body:\n%s", r.String())
			}
		})
	}
}

func TestMultipartBodyIsByteExact(t *testing.T) {
	data, err := os.ReadFile("testdata/torture/mpart01.sip")
	if err != nil {
		t.Fatal(err)
	}
	want := data[bytes.Index(data, []byte("\r\n\r\n"))+4:]
	if len(want) != 553 {
		t.Fatalf("test file body is %d octets, want 553", len(want))
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	r := m.(*Request)
	if !bytes.Equal(r.Body, want) {
		t.Errorf("RFC4475 3.1.1.11 body is not byte-exact")
	}
	if r.ContentType != "multipart/mixed;boundary=7a9cbec02ceef655" {
		t.Errorf("ContentType = %q", r.ContentType)
	}
	if got := r.Get("Content-Transfer-Encoding"); got != "binary" {
		t.Errorf("Content-Transfer-Encoding = %q", got)
	}
	m2, err := Parse(r.AppendTo(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m2.Payload(), want) {
		t.Errorf("body changed through a write")
	}
}

// TestUnknownHeadersKeepTheirBytes covers RFC 3261 §16.6 step 1 and RFC 4475
// §3.1.1.1: a proxy forwards header fields it does not understand unchanged.
func TestUnknownHeadersKeepTheirBytes(t *testing.T) {
	fields := []Field{
		{Name: "NewFangledHeader", Value: "newfangled value\r\n continued newfangled value"},
		{Name: "UnknownHeaderWithUnusualValue", Value: ";;,,;;,;"},
		{Name: "extensionHeader-!.%*+_`'~", Value: "\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb"},
		{Name: "C%6Fntact", Value: "<sip:alias2@host2.example.com>"},
		{Name: "Accept", Value: "application/sdp, application/pkcs7-mime,\r\n        multipart/mixed"},
		{Name: "Date", Value: "Fri, 01 Jan 2010 16:00:00 EST"},
		{Name: "Xyzzy", Value: ""},
		{Name: "X-Quoted", Value: `"a \"b\" ; c" ,, <>`},
		{Name: "x-lower", Value: "Mixed CASE\tvalue"},
	}
	var lines []string
	for _, f := range fields {
		lines = append(lines, f.Name+":   "+f.Value+"  ")
	}
	r := mustRequest(t, invite("", lines...))
	if len(r.Fields) != len(fields) {
		t.Fatalf("Fields = %#v", r.Fields)
	}
	for i, f := range fields {
		if r.Fields[i].Name != f.Name || r.Fields[i].Value != f.Value {
			t.Errorf("field %d = %q: %q, want %q: %q", i, r.Fields[i].Name, r.Fields[i].Value, f.Name, f.Value)
		}
	}
	out := r.String()
	for _, f := range fields {
		if want := "\r\n" + f.Name + ": " + f.Value + "\r\n"; !strings.Contains(out, want) {
			t.Errorf("written message lacks %q", want)
		}
	}
	checkRoundTrip(t, r)
}

func TestMissingMandatoryHeaders(t *testing.T) {
	for _, h := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
		t.Run("RFC3261 8.1.1 request without "+h, func(t *testing.T) {
			pe := mustFail(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{h})...), "", "")...))
			if want := "missing " + h + " header"; pe.Reason != want {
				t.Errorf("Reason = %q, want %q", pe.Reason, want)
			}
			if _, ok := pe.Msg.(*Request); !ok {
				t.Errorf("Msg = %#v, want the partial request", pe.Msg)
			}
		})
		t.Run("RFC3261 8.2.6.2 response without "+h, func(t *testing.T) {
			mustFail(t, crlf(append(append([]string{"SIP/2.0 200 OK"}, headers([]string{h, "Max-Forwards"})...), "", "")...))
		})
	}
	t.Run("RFC4475 3.4.1 inv2543 Max-Forwards may be absent", func(t *testing.T) {
		r := mustRequest(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"Max-Forwards"})...), "", "")...))
		if r.MaxForwards != -1 || r.Get("Max-Forwards") != "" {
			t.Errorf("MaxForwards = %d, want -1", r.MaxForwards)
		}
		if strings.Contains(r.String(), "Max-Forwards") {
			t.Error("an absent Max-Forwards was written")
		}
	})
	t.Run("RFC4475 3.3.1 insuf", func(t *testing.T) {
		pe := mustFail(t, crlf("INVITE sip:user@example.com SIP/2.0", "CSeq: 193942 INVITE",
			"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf", "l: 0", "", ""))
		r := pe.Msg.(*Request)
		if len(r.Via) != 1 || r.Via[0].Branch() != "z9hG4bKkdj.insuf" {
			t.Errorf("Via = %v: a 400 must still be possible", r.Via)
		}
	})
}

func TestDuplicateSingleValueHeaders(t *testing.T) {
	tests := []struct {
		name   string
		header string
		second string
		first  func(r *Request) string
		want   string
	}{
		{"RFC4475 3.3.8 two From", "From", "From: <sip:other@example.com>;tag=2",
			func(r *Request) string { return r.From.Tag() }, "1928301774"},
		{"RFC4475 3.3.8 two To", "To", "t: <sip:other@example.net>",
			func(r *Request) string { return r.To.URI.User }, "bob"},
		{"RFC4475 3.3.8 two Call-ID", "Call-ID", "i: other@192.0.2.2",
			func(r *Request) string { return r.CallID }, "a84b4c76e66710@pc33.atlanta.example.com"},
		{"RFC4475 3.3.8 two CSeq", "CSeq", "CSeq: 59 INVITE",
			func(r *Request) string { return strconv.Itoa(int(r.CSeq.Seq)) }, "314159"},
		{"RFC4475 3.3.8 two Max-Forwards", "Max-Forwards", "Max-Forwards: 5",
			func(r *Request) string { return strconv.Itoa(r.MaxForwards) }, "70"},
		{"RFC3261 20.15 two Content-Type", "Content-Type", "c: text/plain",
			func(r *Request) string { return r.ContentType }, "application/sdp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := []string{tt.second}
			if tt.header == "Content-Type" {
				extra = []string{"Content-Type: application/sdp", tt.second}
			}
			pe := mustFail(t, invite("", extra...))
			if want := "multiple " + tt.header + " header fields"; pe.Reason != want {
				t.Errorf("Reason = %q, want %q", pe.Reason, want)
			}
			r := pe.Msg.(*Request)
			if got := tt.first(r); got != tt.want {
				t.Errorf("the first value must win for the 400: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMaxForwards(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    int
		wantErr bool
	}{
		{"RFC4475 3.3.11 zeromf zero", "0", 0, false},
		{"RFC3261 20.22 typical", "70", 70, false},
		{"RFC3261 20.22 highest", "255", 255, false},
		{"RFC4475 3.1.1.1 leading zeros", "0068", 68, false},
		{"RFC4475 3.1.2.4 scalar02 above 255", "300", 0, true},
		{"RFC3261 20.22 256", "256", 0, true},
		{"RFC3261 20.22 negative", "-1", 0, true},
		{"RFC3261 20.22 letters", "seventy", 0, true},
		{"RFC3261 20.22 empty", "", 0, true},
		{"RFC3261 20.22 two numbers", "70 70", 0, true},
		{"RFC3261 20.22 huge", "100000000000000000000000", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := crlf(append(append([]string{"OPTIONS sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"Max-Forwards"}, "Max-Forwards: "+tt.value)...), "", "")...)
			if tt.wantErr {
				pe := mustFail(t, s)
				if !strings.Contains(pe.Reason, "Max-Forwards") {
					t.Errorf("Reason = %q", pe.Reason)
				}
				return
			}
			r := mustRequest(t, s)
			if r.MaxForwards != tt.want {
				t.Errorf("MaxForwards = %d, want %d", r.MaxForwards, tt.want)
			}
			checkRoundTrip(t, r)
		})
	}
}

func TestCSeq(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    CSeq
		wantErr bool
	}{
		{"RFC3261 20.16 CSeq", "314159 INVITE", CSeq{314159, "INVITE"}, false},
		{"RFC4475 3.1.2.3 zero", "0 INVITE", CSeq{0, "INVITE"}, false},
		{"RFC4475 3.1.1.1 leading zeros and LWS", "0009   INVITE", CSeq{9, "INVITE"}, false},
		{"RFC3261 8.1.1.5 just below 2**31", "2147483647 INVITE", CSeq{2147483647, "INVITE"}, false},
		{"RFC3261 8.1.1.5 32-bit unsigned accepted liberally", "4294967295 INVITE", CSeq{4294967295, "INVITE"}, false},
		{"RFC4475 3.1.1.2 intmeth unusual method", "139122385 !interesting-Method0123456789_*+`.%indeed'~", CSeq{139122385, "!interesting-Method0123456789_*+`.%indeed'~"}, false},
		{"RFC3261 8.1.1.5 2**32 does not fit", "4294967296 INVITE", CSeq{}, true},
		{"RFC4475 3.1.2.4 scalar02 overlarge", "36893488147419103232 REGISTER", CSeq{}, true},
		{"RFC3261 20.16 no number", "INVITE", CSeq{}, true},
		{"RFC3261 20.16 no method", "1", CSeq{}, true},
		{"RFC3261 20.16 no LWS", "1INVITE", CSeq{}, true},
		{"RFC3261 20.16 negative", "-1 INVITE", CSeq{}, true},
		{"RFC3261 20.16 method with space", "1 INV ITE", CSeq{}, true},
		{"RFC3261 20.16 method not a token", "1 INV@TE", CSeq{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"CSeq"}, "CSeq: "+tt.value)...), "", "")...)
			if tt.wantErr {
				pe := mustFail(t, s)
				if pe.Reason != "malformed CSeq header" {
					t.Errorf("Reason = %q", pe.Reason)
				}
				r := pe.Msg.(*Request)
				if r.CSeq != (CSeq{}) || len(r.Fields) != 1 || r.Fields[0].Name != "CSeq" || r.Fields[0].Value != tt.value {
					t.Errorf("a malformed CSeq is kept raw for the 400: CSeq %v, Fields %q", r.CSeq, r.Fields)
				}
				return
			}
			r := mustRequest(t, s)
			if r.CSeq != tt.want {
				t.Errorf("CSeq = %v, want %v", r.CSeq, tt.want)
			}
			checkRoundTrip(t, r)
		})
	}
}

func TestCallID(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		wantErr bool
	}{
		{"RFC3261 20.8 word@word", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com", false},
		{"RFC3261 20.8 word only", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", false},
		{"RFC4475 3.1.1.2 intmeth unusual characters", `intmeth.word%ZK-!.*_+'@word` + "`~)(><:\\/\"][?}{", false},
		{"RFC3261 20.8 empty", "", true},
		{"RFC3261 20.8 LWS inside", "abc def@host", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"Call-ID"}, "Call-ID: "+tt.value)...), "", "")...)
			if tt.wantErr {
				if pe := mustFail(t, s); pe.Reason != "malformed Call-ID header" {
					t.Errorf("Reason = %q", pe.Reason)
				}
				return
			}
			r := mustRequest(t, s)
			if r.CallID != tt.value {
				t.Errorf("CallID = %q, want %q", r.CallID, tt.value)
			}
			checkRoundTrip(t, r)
		})
	}
}

func TestMalformedHotHeaders(t *testing.T) {
	tests := []struct {
		name   string
		header string
		line   string
		reason string
	}{
		{"RFC4475 3.1.2.14 badaspec spaces within addr-spec", "To", `To: "Watson, Thomas" < sip:t.watson@example.org >`, "malformed To header"},
		{"RFC4475 3.1.2.15 baddn unquoted comma in display name", "From", "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43", "malformed From header"},
		{"RFC4475 3.1.2.6 quotbal unterminated quote", "To", `To: "Mr. J. User <sip:j.user@example.com>`, "malformed To header"},
		{"RFC4475 3.1.2.13 regbadct URI with headers outside <>", "", "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E", "malformed Contact header"},
		{"RFC4475 3.1.2.1 badinv01 empty Contact parameters", "", `Contact: "Joe" <sip:joe@example.org>;;;;`, "malformed Contact header"},
		{"RFC3261 25.1 Contact with unterminated quote", "", `Contact: "Joe <sip:joe@example.org>, <sip:x@y>`, "malformed Contact header"},
		{"RFC3261 25.1 Route without <>", "", "Route: sip:p1.example.com;lr, <sip:p2.example.com;lr", "malformed Route header"},
		{"RFC3261 25.1 bad Record-Route", "", "Record-Route: <sip:p1.example.com:0;lr>", "malformed Record-Route header"},
		{"RFC3261 20.15 Content-Type without a slash", "", "Content-Type: sdp", "malformed Content-Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var without []string
			if tt.header != "" {
				without = []string{tt.header}
			}
			s := crlf(append(append([]string{"OPTIONS sip:bob@biloxi.example.com SIP/2.0"}, headers(without, tt.line)...), "", "")...)
			pe := mustFail(t, s)
			if !strings.HasPrefix(pe.Reason, tt.reason) {
				t.Errorf("Reason = %q, want prefix %q", pe.Reason, tt.reason)
			}
			r := pe.Msg.(*Request)
			// The malformed field is kept raw, as sent, so a 400 can echo it.
			name, value, _ := strings.Cut(tt.line, ":")
			if len(r.Fields) != 1 || r.Fields[0].Name != name || r.Fields[0].Value != strings.TrimSpace(value) {
				t.Errorf("Fields = %q, want the raw line", r.Fields)
			}
		})
	}
}

// TestParseErrorMsg covers RFC 3261 §8.2.6 and RFC 4475 §3.1.2: a request
// that is malformed but has a usable top Via can still be answered with a
// 400; one without a usable start line cannot.
func TestParseErrorMsg(t *testing.T) {
	t.Run("RFC4475 3.1.2.14 malformed To, good Via", func(t *testing.T) {
		pe := mustFail(t, crlf(append(append([]string{"OPTIONS sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"To"}, "To: < sip:bob@biloxi.example.com >")...), "", "")...))
		req, ok := pe.Msg.(*Request)
		if !ok {
			t.Fatalf("Msg = %#v", pe.Msg)
		}
		if len(req.Via) != 1 || req.Via[0].SentBy() != "pc33.atlanta.example.com" || req.Via[0].Branch() != "z9hG4bK776asdhds" {
			t.Errorf("Via = %v", req.Via)
		}
		resp := NewResponse(req, 400, "Bad Request - "+pe.Reason)
		out := resp.String()
		for _, want := range []string{
			"SIP/2.0 400 Bad Request - malformed To header",
			"\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
			"\r\nTo: < sip:bob@biloxi.example.com >\r\n",
			"\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n",
			"\r\nCSeq: 314159 INVITE\r\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("400 lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("RFC4475 3.1.2.1 badinv01 sent-by salvaged from a malformed Via", func(t *testing.T) {
		pe := mustFail(t, crlf("INVITE sip:user@example.com SIP/2.0", "To: sip:j.user@example.com",
			"From: sip:caller@example.net;tag=134161461246", "Max-Forwards: 7", "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
			"CSeq: 8 INVITE", "Via: SIP/2.0/UDP 192.0.2.15;;,;,,", "l: 0", "", ""))
		req := pe.Msg.(*Request)
		if len(req.Via) != 1 || req.Via[0].Host != "192.0.2.15" || req.Via[0].Transport != "UDP" {
			t.Errorf("Via = %#v", req.Via)
		}
	})
	for _, via := range []string{
		"SIP/2.0/UDP host.example.com junk;branch=z9hG4bK1",
		"SIP/2.0/UDP host.example.com:5060\tjunk ;branch=z9hG4bK1",
		"SIP/2.0/UDP host.example.com;branch=z9hG4bK1;;",
	} {
		t.Run("RFC3261 8.2.6.2 a salvaged Via echoes as sent: "+via, func(t *testing.T) {
			pe := mustFail(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"Via"}, "Via: "+via)...), "", "")...))
			req := pe.Msg.(*Request)
			if len(req.Via) != 1 || req.Via[0].Host != "host.example.com" || req.Via[0].Branch() != "z9hG4bK1" {
				t.Fatalf("Via = %#v", req.Via)
			}
			if out := NewResponse(req, 400, "").String(); !strings.Contains(out, "\r\nVia: "+via+"\r\n") {
				t.Errorf("400 does not echo the Via:\n%s", out)
			}
		})
	}
	t.Run("RFC3261 18.2.1 Via without a usable sent-by", func(t *testing.T) {
		pe := mustFail(t, crlf(append(append([]string{"INVITE sip:bob@biloxi.example.com SIP/2.0"}, headers([]string{"Via"}, "Via: garbage")...), "", "")...))
		req := pe.Msg.(*Request)
		if len(req.Via) != 0 || len(req.Fields) != 1 || req.Fields[0].Value != "garbage" {
			t.Errorf("Via = %v, Fields = %q", req.Via, req.Fields)
		}
	})
	t.Run("RFC4475 3.1.2.5 scalarlg response with a bad header", func(t *testing.T) {
		pe := mustFail(t, response("SIP/2.0 503 Service Unavailable", "Retry-After: 949302838503028349304023988", "CSeq: 9292394834772304023312 OPTIONS"))
		if _, ok := pe.Msg.(*Response); !ok {
			t.Errorf("Msg = %#v, want the partial response", pe.Msg)
		}
	})
	t.Run("RFC4475 3.1.2.19 bigcode unusable Status-Line", func(t *testing.T) {
		if pe := mustFail(t, response("SIP/2.0 4294967301 better not break the receiver")); pe.Msg != nil {
			t.Errorf("Msg = %#v, want nil", pe.Msg)
		}
	})
	t.Run("RFC3261 7.1 unusable Request-Line", func(t *testing.T) {
		if pe := mustFail(t, crlf(append(append([]string{"<INVITE> sip:x SIP/2.0"}, headers(nil)...), "", "")...)); pe.Msg != nil {
			t.Errorf("Msg = %#v, want nil", pe.Msg)
		}
	})
}

func TestAppendTo(t *testing.T) {
	r := mustRequest(t, crlf(
		"INVITE sip:bob@biloxi.example.com SIP/2.0",
		"X-First: 1",
		"Contact: <sip:alice@192.0.2.101>",
		"c: application/sdp",
		"CSeq: 1 INVITE",
		"Call-ID: abc",
		"To: <sip:bob@biloxi.example.com>",
		"From: <sip:alice@atlanta.example.com>;tag=1",
		"Max-Forwards: 70",
		"Record-Route: <sip:rr.example.com;lr>",
		"Route: <sip:r.example.com;lr>",
		"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
		"X-Last: 2",
		"Content-Length: 3",
		"",
		"v=0"))
	want := crlf(
		"INVITE sip:bob@biloxi.example.com SIP/2.0",
		"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
		"Route: <sip:r.example.com;lr>",
		"Record-Route: <sip:rr.example.com;lr>",
		"Max-Forwards: 70",
		"From: <sip:alice@atlanta.example.com>;tag=1",
		"To: <sip:bob@biloxi.example.com>",
		"Call-ID: abc",
		"CSeq: 1 INVITE",
		"Contact: <sip:alice@192.0.2.101>",
		"X-First: 1",
		"X-Last: 2",
		"Content-Type: application/sdp",
		"Content-Length: 3",
		"",
		"v=0")
	if got := r.String(); got != want {
		t.Errorf("RFC3261 7.3.1 written form:\n%s\nwant:\n%s", got, want)
	}
	if got := string(r.AppendTo([]byte("prefix"))); got != "prefix"+want {
		t.Error("AppendTo does not append")
	}
	resp := NewResponse(r, 200, "")
	resp.Body = []byte("x")
	if got := resp.String(); !strings.HasPrefix(got, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n") ||
		!strings.HasSuffix(got, "\r\nContent-Length: 1\r\n\r\nx") {
		t.Errorf("response written as:\n%s", got)
	}
	if resp.Head() != &resp.Header || string(resp.Payload()) != "x" || r.Head() != &r.Header || string(r.Payload()) != "v=0" {
		t.Error("Head/Payload do not return the message's own parts")
	}
	// A zero Request writes a SIP/2.0 start line.
	if got := (&Request{Method: "OPTIONS", URI: URI{Scheme: "sip", Host: "h"}, Header: Header{MaxForwards: -1}}).String(); got != "OPTIONS sip:h SIP/2.0\r\nContent-Length: 0\r\n\r\n" {
		t.Errorf("zero request written as %q", got)
	}
}

// tortureCases lists every file of testdata/torture with the verdict of
// RFC 4475 or RFC 5118 for a parser. Invalid files carry a fragment of the
// reason the parser must give.
var tortureCases = []struct {
	file    string
	section string
	reason  string // "" for messages that parse
	check   func(t *testing.T, m Message)
}{
	{"wsinv", "RFC4475 3.1.1.1", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if len(r.Via) != 3 || r.MaxForwards != 68 || r.CSeq != (CSeq{9, "INVITE"}) || len(r.Route) != 1 || len(r.Contact) != 1 {
			t.Errorf("typed headers: %#v", r.Header)
		}
		if r.Get("NewFangledHeader") != "newfangled value continued newfangled value" || r.Get("UnknownHeaderWithUnusualValue") != ";;,,;;,;" {
			t.Errorf("unknown headers: %q", r.Fields)
		}
		if r.Get("Subject") != "" || !r.Has("s") {
			t.Errorf("empty Subject: %q", r.Get("s"))
		}
		if r.URI.Params != ";unknownparam" || len(r.Body) != 150 {
			t.Errorf("URI %q, body %d", r.URI.String(), len(r.Body))
		}
	}},
	{"intmeth", "RFC4475 3.1.1.2", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.Method != "!interesting-Method0123456789_*+`.%indeed'~" || r.CSeq.Method != r.Method || r.MaxForwards != 255 {
			t.Errorf("method %q, CSeq %v", r.Method, r.CSeq)
		}
		if r.To.DisplayName() != "BEL:\x07 NUL:\x00 DEL:\x7f" {
			t.Errorf("To display name %q", r.To.DisplayName())
		}
		if r.Via[0].Branch() != "z9hG4bK-.!%66*_+`'~" {
			t.Errorf("branch %q", r.Via[0].Branch())
		}
	}},
	{"esc01", "RFC4475 3.1.1.3", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if Unescape(r.URI.User) != "sips:user@example.com" || Unescape(r.To.URI.User) != "user" || Unescape(r.From.URI.User) != "I have spaces" {
			t.Errorf("escapes: %q %q %q", r.URI.User, r.To.URI.User, r.From.URI.User)
		}
		if r.ContentType != "application/sdp" || r.Contact[0].URI.Params != ";%6C%72;n%61me=v%61lue%25%34%31" {
			t.Errorf("C: %q, Contact %q", r.ContentType, r.Contact[0].String())
		}
	}},
	{"escnull", "RFC4475 3.1.1.4", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if len(r.Contact) != 2 || r.Contact[0].URI.Equal(&r.Contact[1].URI) {
			t.Errorf("two distinct contacts: %v", r.Contact)
		}
		if Unescape(r.To.URI.User) != "null-\x00-null" {
			t.Errorf("To user %q", Unescape(r.To.URI.User))
		}
	}},
	{"esc02", "RFC4475 3.1.1.5", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.Method != "RE%47IST%45R" || len(r.Contact) != 2 || r.Get("C%6Fntact") != "<sip:alias2@host2.example.com>" {
			t.Errorf("method %q, contacts %v", r.Method, r.Contact)
		}
	}},
	{"lwsdisp", "RFC4475 3.1.1.6", "", func(t *testing.T, m Message) {
		if f := m.Head().From; f.Display != "caller" || f.Tag() != "323" {
			t.Errorf("From %#v", f)
		}
	}},
	{"longreq", "RFC4475 3.1.1.7", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if len(r.Via) != 34 || r.Via[0].Host != "sip33.example.com" || r.Via[33].Host != "host.example.com" {
			t.Errorf("%d Vias", len(r.Via))
		}
		if len(r.Body) != 150 {
			t.Errorf("body %d", len(r.Body))
		}
	}},
	{"dblreq", "RFC4475 3.1.1.8", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.Method != "REGISTER" || r.Body != nil || r.CallID != "dblreq.0ha0isndaksdj99sdfafnl3lk233412" {
			t.Errorf("%s %q body %q", r.Method, r.CallID, r.Body)
		}
	}},
	{"semiuri", "RFC4475 3.1.1.9", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.URI.User != "user;par=u%40example.net" || r.URI.Host != "example.com" || r.URI.Params != "" {
			t.Errorf("URI %#v", r.URI)
		}
		if got := r.Values("Accept"); len(got) != 6 {
			t.Errorf("Accept values %q", got)
		}
	}},
	{"transports", "RFC4475 3.1.1.10", "", func(t *testing.T, m Message) {
		var got []string
		for _, v := range m.Head().Via {
			got = append(got, v.Transport)
		}
		if !slices.Equal(got, []string{"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"}) {
			t.Errorf("transports %q", got)
		}
	}},
	{"mpart01", "RFC4475 3.1.1.11", "", func(t *testing.T, m Message) {
		if len(m.Payload()) != 553 {
			t.Errorf("body %d", len(m.Payload()))
		}
	}},
	{"unreason", "RFC4475 3.1.1.12", "", func(t *testing.T, m Message) {
		r := m.(*Response)
		if r.StatusCode != 200 || !strings.HasPrefix(r.Reason, "= 2**3 * 5**2 ") {
			t.Errorf("%d %q", r.StatusCode, r.Reason)
		}
	}},
	{"noreason", "RFC4475 3.1.1.13", "", func(t *testing.T, m Message) {
		if r := m.(*Response); r.StatusCode != 100 || r.Reason != "" {
			t.Errorf("%d %q", r.StatusCode, r.Reason)
		}
	}},
	{"badinv01", "RFC4475 3.1.2.1", "malformed Via", nil},
	{"clerr", "RFC4475 3.1.2.2", "Content-Length", nil},
	{"ncl", "RFC4475 3.1.2.3", "Content-Length", nil},
	{"scalar02", "RFC4475 3.1.2.4", "CSeq", nil},
	{"scalarlg", "RFC4475 3.1.2.5", "CSeq", nil},
	{"quotbal", "RFC4475 3.1.2.6", "malformed To", nil},
	{"ltgtruri", "RFC4475 3.1.2.7", "Request-URI", nil},
	{"lwsruri", "RFC4475 3.1.2.8", "Request-Line", nil},
	{"lwsstart", "RFC4475 3.1.2.9", "", func(t *testing.T, m Message) {
		if r := m.(*Request); r.URI.String() != "sip:user@example.com" || r.Version != "SIP/2.0" {
			t.Errorf("%q %q", r.URI.String(), r.Version)
		}
	}},
	{"trws", "RFC4475 3.1.2.10", "", func(t *testing.T, m Message) {
		if r := m.(*Request); r.Version != "SIP/2.0" {
			t.Errorf("version %q", r.Version)
		}
	}},
	{"escruri", "RFC4475 3.1.2.11", "", func(t *testing.T, m Message) {
		if r := m.(*Request); r.URI.Headers != "Route=%3Csip:example.com%3E" {
			t.Errorf("URI headers %q: the server, not the parser, rejects them", r.URI.Headers)
		}
	}},
	{"baddate", "RFC4475 3.1.2.12", "", func(t *testing.T, m Message) {
		if got := m.Head().Get("Date"); got != "Fri, 01 Jan 2010 16:00:00 EST" {
			t.Errorf("Date %q", got)
		}
	}},
	{"regbadct", "RFC4475 3.1.2.13", "malformed Contact", nil},
	{"badaspec", "RFC4475 3.1.2.14", "malformed To", nil},
	{"baddn", "RFC4475 3.1.2.15", "malformed From", nil},
	{"baddn-crlf", "RFC4475 3.1.2.15", "malformed From", nil},
	{"badvers", "RFC4475 3.1.2.16", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.Version != "SIP/7.0" || r.Via[0].Proto != "SIP/7.0" {
			t.Errorf("version %q, Via %q", r.Version, r.Via[0].Proto)
		}
	}},
	{"mismatch01", "RFC4475 3.1.2.17", "", func(t *testing.T, m Message) {
		if r := m.(*Request); r.Method != "OPTIONS" || r.CSeq.Method != "INVITE" {
			t.Errorf("%q vs %q", r.Method, r.CSeq.Method)
		}
	}},
	{"mismatch02", "RFC4475 3.1.2.18", "", func(t *testing.T, m Message) {
		if r := m.(*Request); r.Method != "NEWMETHOD" || r.CSeq.Method != "INVITE" {
			t.Errorf("%q vs %q", r.Method, r.CSeq.Method)
		}
	}},
	{"bigcode", "RFC4475 3.1.2.19", "Status-Code", nil},
	{"badbranch", "RFC4475 3.2.1", "", func(t *testing.T, m Message) {
		if b := m.Head().Via[0].Branch(); b != MagicCookie {
			t.Errorf("branch %q", b)
		}
	}},
	{"insuf", "RFC4475 3.3.1", "missing", nil},
	{"unkscm", "RFC4475 3.3.2", "", func(t *testing.T, m Message) {
		if u := m.(*Request).URI; u.Scheme != "nobodyKnowsThisScheme" || u.IsSIP() {
			t.Errorf("URI %#v", u)
		}
	}},
	{"novelsc", "RFC4475 3.3.3", "", func(t *testing.T, m Message) {
		if u := m.(*Request).URI; u.Scheme != "soap.beep" || u.Opaque != "//192.0.2.103:3002" {
			t.Errorf("URI %#v", u)
		}
	}},
	{"unksm2", "RFC4475 3.3.4", "", func(t *testing.T, m Message) {
		h := m.Head()
		if h.To.URI.Scheme != "isbn" || h.From.URI.Scheme != "http" || h.Contact[0].URI.Scheme != "name" {
			t.Errorf("schemes %q %q %q", h.To.URI.Scheme, h.From.URI.Scheme, h.Contact[0].URI.Scheme)
		}
	}},
	{"bext01", "RFC4475 3.3.5", "", func(t *testing.T, m Message) {
		h := m.Head()
		if !slices.Equal(h.Values("Require"), []string{"nothingSupportsThis", "nothingSupportsThisEither"}) ||
			!slices.Equal(h.Values("Proxy-Require"), []string{"noProxiesSupportThis", "norDoAnyProxiesSupportThis"}) {
			t.Errorf("Require %q, Proxy-Require %q", h.Values("Require"), h.Values("Proxy-Require"))
		}
	}},
	{"invut", "RFC4475 3.3.6", "", func(t *testing.T, m Message) {
		if h := m.Head(); h.ContentType != "application/unknownformat" || len(m.Payload()) != 40 {
			t.Errorf("%q %d", h.ContentType, len(m.Payload()))
		}
	}},
	{"regaut01", "RFC4475 3.3.7", "", func(t *testing.T, m Message) {
		if got := m.Head().Get("Authorization"); got != "NoOneKnowsThisScheme opaque-data=here" {
			t.Errorf("Authorization %q", got)
		}
	}},
	{"multi01", "RFC4475 3.3.8", "multiple", nil},
	{"mcl01", "RFC4475 3.3.9", "Content-Length", nil},
	{"bcast", "RFC4475 3.3.10", "", func(t *testing.T, m Message) {
		if h := m.Head(); len(h.Via) != 2 || h.Via[1].Host != "255.255.255.255" {
			t.Errorf("Via %v", h.Via)
		}
	}},
	{"zeromf", "RFC4475 3.3.11", "", func(t *testing.T, m Message) {
		if mf := m.Head().MaxForwards; mf != 0 {
			t.Errorf("Max-Forwards %d", mf)
		}
	}},
	{"cparam01", "RFC4475 3.3.12", "", func(t *testing.T, m Message) {
		c := m.Head().Contact[0]
		if c.URI.Params != "" || c.Params != ";unknownparam" {
			t.Errorf("unknownparam must be a contact-param: %#v", c)
		}
	}},
	{"cparam02", "RFC4475 3.3.13", "", func(t *testing.T, m Message) {
		c := m.Head().Contact[0]
		if c.URI.Params != ";unknownparam" || c.Params != "" {
			t.Errorf("unknownparam must be a url-parameter: %#v", c)
		}
	}},
	{"regescrt", "RFC4475 3.3.14", "", func(t *testing.T, m Message) {
		if c := m.Head().Contact[0]; c.URI.Headers != "Route=%3Csip:sip.example.com%3E" {
			t.Errorf("Contact %#v", c)
		}
	}},
	{"sdp01", "RFC4475 3.3.15", "", func(t *testing.T, m Message) {
		if got := m.Head().Get("Accept"); got != "text/nobodyKnowsThis" {
			t.Errorf("Accept %q", got)
		}
	}},
	{"inv2543", "RFC4475 3.4.1", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.MaxForwards != -1 || r.Via[0].Branch() != "" || r.From.Tag() != "" || len(r.RecordRoute) != 1 {
			t.Errorf("%#v", r.Header)
		}
		if !strings.HasPrefix(string(r.Body), "v=0\r\n") || !strings.HasSuffix(string(r.Body), "m=audio 49217 RTP/AVP 0\r\n") {
			t.Errorf("the body is every octet after the empty line: %q", r.Body)
		}
	}},
	{"rfc4475-test", "RFC4475 archive test.dat", "Request-Line", nil},
	{"ipv6-good", "RFC5118 4.1", "", func(t *testing.T, m Message) {
		r := m.(*Request)
		if r.URI.Host != "[2001:db8::10]" || r.Via[0].Host != "[2001:db8::9:1]" || r.Contact[0].URI.Host != "[2001:db8::1]" {
			t.Errorf("%q %q %q", r.URI.Host, r.Via[0].Host, r.Contact[0].URI.Host)
		}
	}},
	{"ipv6-bad", "RFC5118 4.2", "Request-URI", nil},
	{"port-ambiguous", "RFC5118 4.3", "", func(t *testing.T, m Message) {
		if u := m.(*Request).URI; u.Host != "[2001:db8::10:5070]" || u.Port != 0 {
			t.Errorf("host %q port %d", u.Host, u.Port)
		}
	}},
	{"port-unambiguous", "RFC5118 4.4", "", func(t *testing.T, m Message) {
		if u := m.(*Request).URI; u.Host != "[2001:db8::10]" || u.Port != 5070 {
			t.Errorf("host %q port %d", u.Host, u.Port)
		}
	}},
	{"via-received-param-with-delim", "RFC5118 4.5", "", func(t *testing.T, m Message) {
		if got := m.Head().Via[0].Received(); got != "[2001:db8::9:255]" {
			t.Errorf("received %q", got)
		}
	}},
	{"via-received-param-no-delim", "RFC5118 4.5", "", func(t *testing.T, m Message) {
		if got := m.Head().Via[0].Received(); got != "2001:db8::9:255" {
			t.Errorf("received %q", got)
		}
	}},
	{"ipv6-in-sdp", "RFC5118 4.6", "", func(t *testing.T, m Message) {
		if !bytes.Contains(m.Payload(), []byte("c=IN IP6 2001:db8::20\r\n")) {
			t.Errorf("body %q", m.Payload())
		}
	}},
	{"mult-ip-in-header", "RFC5118 4.7", "", func(t *testing.T, m Message) {
		h := m.Head()
		if len(h.Via) != 3 || h.Via[0].SentBy() != "[2001:db8::9:1]:6050" || h.Via[1].Host != "192.0.2.1" || h.Via[2].Received() != "192.0.2.200" {
			t.Errorf("Via %v", h.Via)
		}
	}},
	{"mult-ip-in-sdp", "RFC5118 4.8", "", nil},
	{"ipv4-mapped-ipv6", "RFC5118 4.9", "", func(t *testing.T, m Message) {
		if h := m.Head(); h.Via[0].SentBy() != "[::ffff:192.0.2.10]:19823" || h.Contact[0].URI.Host != "[::ffff:192.0.2.2]" {
			t.Errorf("Via %v Contact %v", h.Via, h.Contact)
		}
	}},
	{"ipv6-bug-abnf-3-colons", "RFC5118 4.10", "", func(t *testing.T, m Message) {
		if u := m.(*Request).URI; u.Host != "[2001:db8:::192.0.2.1]" {
			t.Errorf("host %q", u.Host)
		}
	}},
	{"ipv6-correct-abnf-2-colons", "RFC5118 4.10", "", func(t *testing.T, m Message) {
		if u := m.(*Request).URI; u.Host != "[2001:db8::192.0.2.1]" {
			t.Errorf("host %q", u.Host)
		}
	}},
}

// TestTorture runs every torture message through the parser and checks the
// RFC's verdict. A valid message must also keep its meaning when written
// back out and parsed again.
func TestTorture(t *testing.T) {
	files, err := filepath.Glob("testdata/torture/*.sip")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, tc := range tortureCases {
		listed[tc.file] = true
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".sip"); !listed[name] {
			t.Errorf("%s has no verdict in tortureCases", f)
		}
	}
	if len(files) != len(tortureCases) {
		t.Errorf("%d files, %d cases", len(files), len(tortureCases))
	}
	for _, tc := range tortureCases {
		t.Run(tc.section+" "+tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/torture", tc.file+".sip"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data)
			if tc.reason != "" {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("parsed, but the RFC says the message is invalid (err = %v)", err)
				}
				if !strings.Contains(pe.Reason, tc.reason) {
					t.Errorf("Reason = %q, want it to mention %q", pe.Reason, tc.reason)
				}
				// Invalid requests with a usable top Via get a 400.
				if req, ok := pe.Msg.(*Request); ok && len(req.Via) > 0 {
					if out := NewResponse(req, 400, "").String(); !strings.HasPrefix(out, "SIP/2.0 400 Bad Request\r\nVia: ") {
						t.Errorf("400: %q", out)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("the RFC says the message parses: %v", err)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
			checkRoundTrip(t, m)
		})
	}
}

// TestTortureInvalidHaveVia checks which invalid torture requests can still
// be answered: all but those without a Via (RFC 3261 §18.2.2).
func TestTortureInvalidHaveVia(t *testing.T) {
	tests := []struct {
		file   string
		sentBy string // "" when no response can be addressed
	}{
		{"badaspec", "host4.example.com:5060"},
		{"baddn", "c.example.com:5060"},
		{"baddn-crlf", "c.example.com:5060"},
		{"badinv01", "192.0.2.15"},
		{"clerr", "host5.example.com"},
		{"insuf", "192.0.2.95"},
		{"ipv6-bad", "[2001:db8::9:1]"},
		{"ltgtruri", "192.0.2.5"},
		{"lwsruri", "192.0.2.1:5060"},
		{"mcl01", "host5.example.net"},
		{"multi01", "192.0.2.25"},
		{"ncl", "192.0.2.53"},
		{"quotbal", "192.0.2.59:5050"},
		{"regbadct", "135.180.130.133:5060"},
		{"scalar02", "host129.example.com"},
		{"rfc4475-test", ""},
	}
	for _, tt := range tests {
		t.Run("RFC3261 8.2.6 "+tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/torture", tt.file+".sip"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v", err)
			}
			req, ok := pe.Msg.(*Request)
			if !ok {
				t.Fatalf("Msg = %#v, want a partial request", pe.Msg)
			}
			got := ""
			if len(req.Via) > 0 {
				got = req.Via[0].SentBy()
			}
			if got != tt.sentBy {
				t.Errorf("top Via sent-by = %q, want %q", got, tt.sentBy)
			}
		})
	}
}
