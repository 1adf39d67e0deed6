package rlmi

import (
	"strconv"
	"testing"
)

// benchList is a buddy list of 50 resources, each with one active
// instance whose state travels in its own part.
func benchList() (List, []Part) {
	l := List{URI: "sip:alice-buddies@example.com", Version: 12, FullState: true, Names: []Name{{Lang: "en", Text: "Buddies"}}}
	var parts []Part
	for i := range 50 {
		n := strconv.Itoa(i)
		cid := "p" + n + "@rls.example.com"
		l.Resources = append(l.Resources, Resource{URI: "sip:user" + n + "@example.com", Names: []Name{{Text: "User " + n}},
			Instances: []Instance{{ID: "i" + n, State: "active", CID: cid}}})
		parts = append(parts, Part{CID: cid, ContentType: `application/pidf+xml;charset="UTF-8"`,
			Body: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:user` + n + `@example.com">
<tuple id="t1"><status><basic>open</basic></status><contact>sip:user` + n + `@192.0.2.7:5060</contact></tuple>
</presence>
`)})
	}
	return l, parts
}

// BenchmarkAppend writes the RLMI document of a full-state list NOTIFY
// into a reused buffer.
func BenchmarkAppend(b *testing.B) {
	l, _ := benchList()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = l.Append(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkMultipart builds the whole body of that NOTIFY.
func BenchmarkMultipart(b *testing.B) {
	l, parts := benchList()
	doc := l.Append(nil)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		_, body, err := Multipart("50UBfW7LSCVLtggUPe5z", "root@rls.example.com", doc, parts)
		if err != nil {
			b.Fatal(err)
		}
		n = len(body)
	}
	b.SetBytes(int64(n))
}

// BenchmarkParseMultipart splits such a body, as a watcher of a remote
// list does.
func BenchmarkParseMultipart(b *testing.B) {
	l, parts := benchList()
	ct, body, err := Multipart("50UBfW7LSCVLtggUPe5z", "root@rls.example.com", l.Append(nil), parts)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := ParseMultipart(ct, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse reads the RLMI document of the RFC 4662 example.
func BenchmarkParse(b *testing.B) {
	in := readFile(b, "rfc4662-full.xml")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
