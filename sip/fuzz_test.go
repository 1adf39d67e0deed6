package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary datagrams to Parse. Whatever the input, Parse
// must not panic; a message it accepts must survive being written back out
// and parsed again with the same meaning (RFC 3261 §7.3.1: a proxy that
// forwards a message must not change what it says), and the written form
// must be a fixed point: write(parse(write(parse(x)))) == write(parse(x)).
// A message it rejects must still be safe to answer with a 400.
// fuzzReusedResponse is what a ResponseBuffer held before the fuzzed input.
const fuzzReusedResponse = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n" +
	"Via: SIP/2.0/UDP b.example;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP c.example;branch=z9hG4bK3\r\n" +
	"From: <sip:a@example>;tag=1\r\nTo: <sip:b@example>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n" +
	"Contact: <sip:b@192.0.2.1>\r\nRecord-Route: <sip:p1;lr>,<sip:p2;lr>\r\nX-A: 1\r\nX-B: 2\r\n" +
	"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/torture", "testdata/bench"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.sip"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range fuzzSeedMessages {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		m, err := Parse(data)
		if !bytes.Equal(orig, data) {
			t.Fatal("Parse modified its input")
		}
		// ParseInto a buffer that held another response gives the same.
		var buf ResponseBuffer
		if _, err := ParseInto([]byte(fuzzReusedResponse), &buf); err != nil {
			t.Fatal(err)
		}
		buf.Reset()
		mb, errb := ParseInto(data, &buf)
		if (err == nil) != (errb == nil) || !reflect.DeepEqual(m, mb) {
			t.Fatalf("ParseInto: %#v, %v; Parse: %#v, %v", mb, errb, m, err)
		}
		if _, res := m.(*Response); res != buf.Holds(mb) {
			t.Fatalf("ParseInto: a response %v, held in the buffer %v", res, buf.Holds(mb))
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			if pe.Reason == "" {
				t.Fatal("ParseError without a reason")
			}
			if pe.Msg != m {
				t.Fatalf("ParseError.Msg %p differs from the returned message %p", pe.Msg, m)
			}
			if req, ok := m.(*Request); ok {
				// A server answers what it can of a broken request with a 400
				// (RFC 3261 §8.2.6); building and writing it must be safe.
				NewResponse(req, 400, pe.Reason).AppendTo(nil)
				req.AppendTo(nil)
			} else if m != nil {
				m.AppendTo(nil)
			}
			return
		}
		if m == nil {
			t.Fatal("nil message without an error")
		}
		exerciseAccessors(t, m)
		out := m.AppendTo(nil)
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("written message does not parse: %v\ninput:   %q\nwritten: %q", err, data, out)
		}
		if d := meaningDiff(m, m2); d != "" {
			t.Fatalf("meaning changed through a write:\n%s\ninput:   %q\nwritten: %q", d, data, out)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("typed message changed through a write\nfirst:  %#v\nsecond: %#v\ninput:   %q\nwritten: %q", m, m2, data, out)
		}
		if out2 := m2.AppendTo(nil); !bytes.Equal(out, out2) {
			t.Fatalf("write is not a fixed point\nfirst:  %q\nsecond: %q", out, out2)
		}
	})
}

// exerciseAccessors calls the read accessors a server uses on a parsed
// message; none may panic, and the URIs must equal themselves.
func exerciseAccessors(t *testing.T, m Message) {
	h := m.Head()
	for _, f := range h.Fields {
		h.Get(f.Name)
		h.Values(f.Name)
		h.Has(f.Name)
	}
	for _, n := range []string{"Via", "From", "To", "Call-ID", "CSeq", "Contact", "Route", "Record-Route", "Max-Forwards", "Content-Type", "Content-Length"} {
		h.Get(n)
	}
	for i := range h.Via {
		v := &h.Via[i]
		v.Branch()
		v.Received()
		v.RPort()
		v.SentBy()
	}
	addrs := append(append(append([]Address{h.From, h.To}, h.Contact...), h.Route...), h.RecordRoute...)
	for i := range addrs {
		a := &addrs[i]
		a.Tag()
		a.DisplayName()
		a.URI.Hostname()
		if !a.Wildcard && !a.URI.Equal(&a.URI) {
			t.Fatalf("URI %q is not Equal to itself", a.URI.String())
		}
	}
	if r, ok := m.(*Request); ok && !r.URI.Equal(&r.URI) {
		t.Fatalf("Request-URI %q is not Equal to itself", r.URI.String())
	}
}

// fuzzSeedMessages are small messages that reach corners the torture files
// do not: folds, compact forms, IPv6, quoted parameters, bare LF.
var fuzzSeedMessages = []string{
	"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5060;rport;received=::1\r\nf: \"A \\\"q\\\"\"<sip:a@b>;tag=1\r\nt: b <sip:b@c>\r\ni: x\r\nCSeq: 1 OPTIONS\r\nm: *\r\n\r\n",
	"SIP/2.0 180 \r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1,SIP/2.0/UDP h2\r\nFrom: sip:a@b;tag=x\r\nTo: <tel:+1-555;phone-context=x>\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\nX: a\r\n b\r\n\r\nbody",
	"INVITE sips:u:p@h:1?h=v SIP/2.0\nVia: SIP/2.0/WSS h;x=\"a;b,c\"\nFrom: <sip:a@b>\nTo: <sip:a@b>\nCall-ID: c\nCSeq: 3 INVITE\nRoute: <sip:p;lr>, <sip:q;lr>\nl: 3\n\nabcdef",
}

// FuzzParseURI checks that ParseURI never panics and that an accepted URI
// written out with String reparses to an Equal URI with the same text.
func FuzzParseURI(f *testing.F) {
	for _, s := range fuzzSeedURIs {
		f.Add(s)
	}
	for _, c := range uriEqualCases {
		f.Add(c.a)
		f.Add(c.b)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		if !u.Equal(&u) {
			t.Fatalf("URI %q is not Equal to itself", s)
		}
		w := u.String()
		u2, err := ParseURI(w)
		if err != nil {
			t.Fatalf("ParseURI(%q) ok, but its String %q does not parse: %v", s, w, err)
		}
		if !u.Equal(&u2) || !u2.Equal(&u) {
			t.Fatalf("%q → %q: not Equal (%#v vs %#v)", s, w, u, u2)
		}
		if w2 := u2.String(); w2 != w {
			t.Fatalf("%q → %q → %q: String not stable", s, w, w2)
		}
		if !reflect.DeepEqual(u, u2) && s == w {
			t.Fatalf("%q reparsed differently: %#v vs %#v", s, u, u2)
		}
	})
}

var fuzzSeedURIs = []string{
	"sip:alice@atlanta.com",
	"sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=x&priority=urgent",
	"sip:[2001:db8::10:5070]",
	"sip:user;par=u%40example.net@example.com",
	"sip:sips%3Auser%40example.com@example.net",
	"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
	"tel:+1-201-555-0123;phone-context=example.com",
	"urn:service:sos",
	"soap.beep://192.0.2.103:3002",
	"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
}

// FuzzParseAddress checks that ParseAddress never panics and that an
// accepted address written out reparses to the same address.
func FuzzParseAddress(f *testing.F) {
	for _, s := range fuzzSeedAddresses {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		a.DisplayName()
		a.Tag()
		w := a.String()
		a2, err := ParseAddress(w)
		if err != nil {
			t.Fatalf("ParseAddress(%q) ok, but its String %q does not parse: %v", s, w, err)
		}
		if a.Display != a2.Display || a.Params != a2.Params || a.Wildcard != a2.Wildcard ||
			!a.URI.Equal(&a2.URI) || a.URI.String() != a2.URI.String() {
			t.Fatalf("%q → %q: changed\n%#v\n%#v", s, w, a, a2)
		}
		if w2 := a2.String(); w2 != w {
			t.Fatalf("%q → %q → %q: String not stable", s, w, w2)
		}
		if a.DisplayName() != a2.DisplayName() {
			t.Fatalf("%q: display name %q became %q", s, a.DisplayName(), a2.DisplayName())
		}
	})
}

var fuzzSeedAddresses = []string{
	`"J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8`,
	`caller<sip:caller@example.com>;tag=323`,
	`sip:+19725552222@gw1.example.net;unknownparam`,
	`<sip:+19725552222@gw1.example.net;unknownparam>`,
	`token1~` + "`" + ` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="\xd1\x80\xd0\xb0";tag=_token~1'+` + "`" + `*%!-.`,
	`<sip:bob@192.0.2.4:5060;transport=udp>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`,
	`"Caller" <sip:caller@[2001:db8::1]>`,
	`isbn:2983792873`,
	`<http://www.example.com>;tag=3234233`,
	`"Mr. J. User <sip:j.user@example.com>`,
	`Bell, Alexander <sip:a.g.bell@example.com>;tag=43`,
}
