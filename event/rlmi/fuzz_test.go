package rlmi

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bodies to Parse; whatever it accepts, Append
// must write back so that Parse reads the same List.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		out := l.Append(nil)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Append output rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(l, again) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", l, again)
		}
	})
}

// FuzzParseMultipart feeds arbitrary bodies to ParseMultipart; whatever it
// accepts and Multipart can write again (every part with a distinct
// Content-ID and a Content-Type), it must read back unchanged.
func FuzzParseMultipart(f *testing.F) {
	f.Add(strings.ReplaceAll(rfcContentType, "\r\n    ", " "), readFile(f, "rfc4662-notify.txt"))
	f.Add("multipart/related;boundary=b", multipartBody("b",
		"Content-ID: <r@h>\r\n\r\nroot",
		"Content-ID: <b64@h>\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nPHByZXNl\r\nbmNlLz4=",
		"Content-ID: <qp@h>\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve=\r\n text"))
	f.Add(`multipart/related;boundary=b;start="<x>"`, []byte("preamble\r\n--b\r\nContent-ID: <x>\r\n\r\n--b--"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		root, parts, err := ParseMultipart(contentType, body)
		if err != nil {
			return
		}
		if len(parts) >= MaxParts {
			t.Fatalf("%d parts beside the root", len(parts))
		}
		boundary := "b"
		for i := 0; containsAny(boundary, root, parts); i++ {
			boundary = "b" + strconv.Itoa(i)
		}
		ct, out, err := Multipart(boundary, root.CID, root.Body, parts)
		if err != nil {
			return
		}
		root2, parts2, err := ParseMultipart(ct, out)
		if err != nil {
			t.Fatalf("Multipart output rejected: %v\n%q", err, out)
		}
		if root2.CID != root.CID || !bytes.Equal(root2.Body, root.Body) || len(parts2) != len(parts) {
			t.Fatalf("root or part count changed: %+v %d / %+v %d", root, len(parts), root2, len(parts2))
		}
		for i := range parts {
			if parts2[i].CID != parts[i].CID || parts2[i].ContentType != parts[i].ContentType || !bytes.Equal(parts2[i].Body, parts[i].Body) {
				t.Fatalf("part %d changed: %+v / %+v", i, parts[i], parts2[i])
			}
		}
	})
}

func containsAny(boundary string, root Part, parts []Part) bool {
	if bytes.Contains(root.Body, []byte(boundary)) {
		return true
	}
	for _, p := range parts {
		if bytes.Contains(p.Body, []byte(boundary)) {
			return true
		}
	}
	return false
}
