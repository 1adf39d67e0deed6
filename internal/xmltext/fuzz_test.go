package xmltext

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds arbitrary bodies through Decode: no panic, every error
// carries the prefix, and what it accepts has exactly the root it asked
// for; a latin-1 body always comes out as valid UTF-8, one rune per byte.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`<r xmlns="urn:x" a="1"><b>t</b></r>`))
	f.Add([]byte("<?xml version='1.0' encoding='latin1'?><r xmlns='urn:x'>\xe9</r>"))
	f.Add([]byte("\xef\xbb\xbf<r xmlns='urn:x'/><!-- -->"))
	f.Add([]byte(`<!DOCTYPE r><r xmlns="urn:x"/>`))
	f.Add([]byte(`<r xmlns="urn:x"><a><b><c/></b></a></r>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := testRules.Prepare(b); err == nil && isLatin1(declaredEncoding(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))) {
			if !utf8.Valid(p) || utf8.RuneCount(p) != len(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))) {
				t.Fatalf("latin-1 %q became %q", b, p)
			}
		}
		var v struct {
			XMLName xml.Name
			A       string   `xml:"a,attr"`
			B       []string `xml:"urn:x b"`
		}
		err := testRules.Decode(b, "urn:x", "r", &v)
		if err != nil {
			if !errors.Is(err, errTestTooLarge) && !strings.HasPrefix(err.Error(), "t: ") {
				t.Fatalf("unprefixed error %v", err)
			}
			return
		}
		if v.XMLName.Space != "urn:x" || v.XMLName.Local != "r" {
			t.Fatalf("accepted root %+v in %q", v.XMLName, b)
		}
	})
}

func isLatin1(enc string) bool {
	switch strings.ToLower(enc) {
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii":
		return true
	}
	return false
}

// FuzzAppendEscaped checks that any string, written as text and as an
// attribute, reads back as itself with the characters XML cannot carry
// replaced, and that the output passes CheckChars.
func FuzzAppendEscaped(f *testing.F) {
	for _, s := range []string{"", "a&b<c>\"d'", "\r\n\t", "\x00\x1f\x7f", "\xff\xc3", "\uFFFE\U0010FFFF", "]]>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkRoundTrip(t, s)
	})
}
