package rlmi

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"reflect"
	"strings"
	"testing"
)

const rfcContentType = `multipart/related;type="application/rlmi+xml";` +
	"\r\n    " + `start="<nXYxAE@pres.vancouver.example.com>";boundary="50UBfW7LSCVLtggUPe5z"`

// The NOTIFY body of the example of RFC 4662: the root is the RLMI
// document, and each active instance's cid names one of the other parts.
func TestParseMultipartRFC4662(t *testing.T) {
	body := readFile(t, "rfc4662-notify.txt")
	root, parts, err := ParseMultipart(strings.ReplaceAll(rfcContentType, "\r\n    ", " "), body)
	if err != nil {
		t.Fatal(err)
	}
	if root.CID != "nXYxAE@pres.vancouver.example.com" || root.ContentType != `application/rlmi+xml;charset="UTF-8"` {
		t.Errorf("root %q %q", root.CID, root.ContentType)
	}
	l, err := Parse(root.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 {
		t.Fatalf("%d parts, want 2", len(parts))
	}
	byCID := map[string]Part{}
	for _, p := range parts {
		byCID[p.CID] = p
	}
	for _, r := range l.Resources {
		for _, in := range r.Instances {
			p, ok := byCID[in.CID]
			if !ok {
				t.Errorf("instance %s of %s: no part %q", in.ID, r.URI, in.CID)
				continue
			}
			if p.ContentType != `application/pidf+xml;charset="UTF-8"` || !bytes.Contains(p.Body, []byte(`entity="`+r.URI+`"`)) {
				t.Errorf("part %s: %q\n%s", p.CID, p.ContentType, p.Body)
			}
		}
	}
	if !bytes.HasSuffix(parts[1].Body, []byte("</presence>\r\n")) {
		t.Errorf("last part lost its own line end: %q", parts[1].Body)
	}
}

func TestMultipartExact(t *testing.T) {
	ct, body, err := Multipart("b1", "root@h", []byte("<list/>"), []Part{
		{CID: "p1@h", ContentType: "application/pidf+xml", Body: []byte("<presence/>")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := `multipart/related;type="application/rlmi+xml";start="<root@h>";boundary="b1"`; ct != want {
		t.Errorf("content type %s, want %s", ct, want)
	}
	want := "--b1\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <root@h>\r\nContent-Type: application/rlmi+xml;charset=\"UTF-8\"\r\n\r\n<list/>\r\n" +
		"--b1\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <p1@h>\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n" +
		"--b1--\r\n"
	if string(body) != want {
		t.Errorf("body\n%q\nwant\n%q", body, want)
	}
}

// What Multipart writes, ParseMultipart reads back byte for byte, including
// bodies that end in a line break, are empty, or hold dashes.
func TestMultipartRoundTrip(t *testing.T) {
	l := List{URI: "sip:l@example.com", Version: 3, FullState: true, Resources: []Resource{{URI: "sip:a@example.com",
		Instances: []Instance{{ID: "1", State: "active", CID: "a1@example.com"}}}}}
	doc := l.Append(nil)
	parts := []Part{
		{CID: "a1@example.com", ContentType: `application/pidf+xml;charset="UTF-8"`, Body: []byte("<presence/>\r\n")},
		{CID: "empty@example.com", ContentType: "text/plain", Body: nil},
		{CID: "dashes@example.com", ContentType: "text/plain", Body: []byte("--\r\n--x\r\n-- \n")},
		{CID: "binary@example.com", ContentType: "application/octet-stream", Body: []byte{0, 0xff, '\r', '\n', '\r'}},
	}
	for _, boundary := range []string{"50UBfW7LSCVLtggUPe5z", "=_", "with space and 'quote'?", strings.Repeat("z", 70)} {
		ct, body, err := Multipart(boundary, "root@example.com", doc, parts)
		if err != nil {
			t.Fatalf("boundary %q: %v", boundary, err)
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "multipart/related" || params["type"] != ContentType || params["start"] != "<root@example.com>" || params["boundary"] != boundary {
			t.Errorf("content type %s: %v %v", ct, params, err)
		}
		root, got, err := ParseMultipart(ct, body)
		if err != nil {
			t.Fatalf("boundary %q: %v\n%s", boundary, err, body)
		}
		if root.CID != "root@example.com" || root.ContentType != `application/rlmi+xml;charset="UTF-8"` || !bytes.Equal(root.Body, doc) {
			t.Errorf("root %+v", root)
		}
		if len(got) != len(parts) {
			t.Fatalf("%d parts, want %d", len(got), len(parts))
		}
		for i := range parts {
			if got[i].CID != parts[i].CID || got[i].ContentType != parts[i].ContentType || !bytes.Equal(got[i].Body, parts[i].Body) {
				t.Errorf("part %d: got %+v want %+v", i, got[i], parts[i])
			}
		}
	}
}

func TestMultipartErrors(t *testing.T) {
	doc := []byte("<list/>")
	ok := Part{CID: "p@h", ContentType: "text/plain", Body: []byte("x")}
	cases := []struct {
		name, boundary, root string
		doc                  []byte
		parts                []Part
		want                 string
	}{
		{"empty boundary", "", "r@h", doc, nil, "1 to 70"},
		{"long boundary", strings.Repeat("b", 71), "r@h", doc, nil, "1 to 70"},
		{"boundary ends in space", "b ", "r@h", doc, nil, "1 to 70"},
		{"quote in boundary", `b"`, "r@h", doc, nil, "not allowed"},
		{"CRLF in boundary", "b\r\nX: y", "r@h", doc, nil, "not allowed"},
		{"boundary in document", "list", "r@h", doc, nil, "occurs in the RLMI document"},
		{"boundary in part", "xyz", "r@h", doc, []Part{{CID: "p@h", ContentType: "text/plain", Body: []byte("..xyz..")}}, `occurs in part "p@h"`},
		{"empty root CID", "b", "", doc, nil, "empty Content-ID"},
		{"bracket in CID", "b", "r@h>", doc, nil, "not allowed"},
		{"CRLF in CID", "b", "r@h", doc, []Part{{CID: "p\r\nX: y", ContentType: "text/plain"}}, "not allowed"},
		{"empty part CID", "b", "r@h", doc, []Part{{ContentType: "text/plain"}}, "empty Content-ID"},
		{"part with root's CID", "b", "r@h", doc, []Part{{CID: "r@h", ContentType: "text/plain"}}, "used twice"},
		{"duplicate part CID", "b", "r@h", doc, []Part{ok, ok}, "used twice"},
		{"no content type", "b", "r@h", doc, []Part{{CID: "p@h"}}, "Content-Type"},
		{"bad content type", "b", "r@h", doc, []Part{{CID: "p@h", ContentType: "text/"}}, "Content-Type"},
		{"CRLF in content type", "b", "r@h", doc, []Part{{CID: "p@h", ContentType: "text/plain\r\nX: y"}}, "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct, body, err := Multipart(c.boundary, c.root, c.doc, c.parts)
			if err == nil {
				t.Fatalf("accepted: %s\n%q", ct, body)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "rlmi: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func multipartBody(boundary string, parts ...string) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes()
}

// The root is the part start names, wherever it stands; without start it
// is the first part (RFC 2387 §3.2).
func TestParseMultipartStart(t *testing.T) {
	body := multipartBody("b",
		"Content-ID: <one@h>\r\nContent-Type: text/plain\r\n\r\nfirst",
		"Content-ID: <two@h>\r\nContent-Type: application/rlmi+xml\r\n\r\nsecond",
		"Content-Type: text/plain\r\n\r\nthird without id",
	)
	cases := []struct {
		ct       string
		root     string
		others   []string
		wantErr  string
		rootBody string
	}{
		{ct: `multipart/related;boundary=b;start="<two@h>"`, root: "two@h", others: []string{"one@h", ""}, rootBody: "second"},
		{ct: `multipart/related; boundary="b"`, root: "one@h", others: []string{"two@h", ""}, rootBody: "first"},
		{ct: `Multipart/Related;boundary=b;start="one@h"`, root: "one@h", others: []string{"two@h", ""}, rootBody: "first"},
		{ct: `multipart/related;boundary=b;start="<three@h>"`, wantErr: `no part has the start Content-ID "three@h"`},
	}
	for _, c := range cases {
		root, parts, err := ParseMultipart(c.ct, body)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", c.ct, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.ct, err)
		}
		var others []string
		for _, p := range parts {
			others = append(others, p.CID)
		}
		if root.CID != c.root || string(root.Body) != c.rootBody || !reflect.DeepEqual(others, c.others) {
			t.Errorf("%s: root %q %q, others %q", c.ct, root.CID, root.Body, others)
		}
	}
}

// A resource that is itself a list has its state in a nested
// multipart/related part (RFC 4662 §5), which stays whole.
func TestParseMultipartNested(t *testing.T) {
	innerCT, inner, err := Multipart("inner", "sub@h", []byte("<list uri='sub'/>"), []Part{{CID: "x@h", ContentType: "application/pidf+xml", Body: []byte("<presence/>")}})
	if err != nil {
		t.Fatal(err)
	}
	ct, outer, err := Multipart("outer", "top@h", []byte("<list uri='top'/>"), []Part{{CID: "subpart@h", ContentType: innerCT, Body: inner}})
	if err != nil {
		t.Fatal(err)
	}
	_, parts, err := ParseMultipart(ct, outer)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || parts[0].ContentType != innerCT || !bytes.Equal(parts[0].Body, inner) {
		t.Fatalf("nested part changed: %+v", parts)
	}
	root, subParts, err := ParseMultipart(parts[0].ContentType, parts[0].Body)
	if err != nil || string(root.Body) != "<list uri='sub'/>" || len(subParts) != 1 || string(subParts[0].Body) != "<presence/>" {
		t.Errorf("inner: %v %+v %+v", err, root, subParts)
	}
}

func TestParseMultipartTransferEncodings(t *testing.T) {
	body := multipartBody("b",
		"Content-ID: <r@h>\r\n\r\nroot",
		"Content-ID: <b64@h>\r\nContent-Transfer-Encoding: BASE64\r\n\r\nPHByZXNl\r\nbmNlLz4=",
		"Content-ID: <qp@h>\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve=\r\n text",
		"Content-ID: <8@h>\r\nContent-Transfer-Encoding: 8bit\r\n\r\nna\xc3\xafve",
	)
	_, parts, err := ParseMultipart("multipart/related;boundary=b", body)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"<presence/>", "naïve text", "naïve"}
	for i, w := range want {
		if string(parts[i].Body) != w {
			t.Errorf("part %s: %q, want %q", parts[i].CID, parts[i].Body, w)
		}
	}
}

func TestParseMultipartErrors(t *testing.T) {
	good := multipartBody("b", "Content-ID: <r@h>\r\n\r\nroot")
	cases := []struct {
		name, ct string
		body     []byte
		want     string
	}{
		{"not a media type", "multipart/related;;", good, "Content-Type"},
		{"not related", "multipart/mixed;boundary=b", good, "want multipart/related"},
		{"no boundary", "multipart/related", good, "without boundary"},
		{"other boundary", "multipart/related;boundary=c", good, "multipart body"},
		{"truncated", "multipart/related;boundary=b", good[:len(good)-8], "multipart body"},
		{"no parts", "multipart/related;boundary=b", []byte("--b--\r\n"), "without parts"},
		{"empty body", "multipart/related;boundary=b", nil, "multipart body"},
		{"unknown transfer encoding", "multipart/related;boundary=b", multipartBody("b", "Content-Transfer-Encoding: x-uue\r\n\r\nx"), `"x-uue" is not supported`},
		{"bad base64", "multipart/related;boundary=b", multipartBody("b", "Content-Transfer-Encoding: base64\r\n\r\n!!!!"), "base64"},
		{"too many parts", "multipart/related;boundary=b", multipartBody("b", slicesRepeat("\r\nx", MaxParts+1)...), "more than 1000 body parts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root, parts, err := ParseMultipart(c.ct, c.body)
			if err == nil {
				t.Fatalf("accepted: %+v %+v", root, parts)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "rlmi: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, _, err := ParseMultipart("multipart/related;boundary=b", make([]byte, MaxMultipartSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	// Exactly MaxParts parts are fine.
	_, parts, err := ParseMultipart("multipart/related;boundary=b", multipartBody("b", slicesRepeat("\r\nx", MaxParts)...))
	if err != nil || len(parts) != MaxParts-1 {
		t.Errorf("%d parts: %v", len(parts), err)
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Example of building a list NOTIFY body.
func ExampleMultipart() {
	l := List{URI: "sip:friends@example.com", Version: 0, FullState: true, Resources: []Resource{
		{URI: "sip:bob@example.com", Instances: []Instance{{ID: "b1", State: "active", CID: "b1@rls.example.com"}}},
	}}
	ct, body, err := Multipart("rls-boundary-1", "root@rls.example.com", l.Append(nil), []Part{
		{CID: "b1@rls.example.com", ContentType: "application/pidf+xml", Body: []byte("<presence/>")},
	})
	fmt.Println(ct, err, len(body) > 0)
	// Output: multipart/related;type="application/rlmi+xml";start="<root@rls.example.com>";boundary="rls-boundary-1" <nil> true
}
