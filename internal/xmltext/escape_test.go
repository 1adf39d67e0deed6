package xmltext

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestAppendEscaped(t *testing.T) {
	cases := []struct {
		name, in   string
		text, attr string
	}{
		{"plain", "sip:alice@example.com", "sip:alice@example.com", "sip:alice@example.com"},
		{"markup", `<a href="x">&amp;</a>`, `&lt;a href="x"&gt;&amp;amp;&lt;/a&gt;`, `&lt;a href=&quot;x&quot;&gt;&amp;amp;&lt;/a&gt;`},
		{"apostrophe kept", "O'Brien", "O'Brien", "O'Brien"},
		// XML 1.0 §3.3.3: attribute values have white space normalised.
		{"tab LF CR", "a\tb\nc\rd", "a\tb\nc&#xD;d", "a&#x9;b&#xA;c&#xD;d"},
		{"C0 control", "a\x00b\x1fc\x7f", "a\uFFFDb\uFFFDc\x7f", "a\uFFFDb\uFFFDc\x7f"},
		{"invalid UTF-8", "a\xffb\xc3", "a\uFFFDb\uFFFD", "a\uFFFDb\uFFFD"},
		{"noncharacters", "\uFFFE\uFFFF", "\uFFFD\uFFFD", "\uFFFD\uFFFD"},
		{"surrogate bytes", "\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD", "\uFFFD\uFFFD\uFFFD"},
		{"non-ASCII kept", "Renée 😀 \u00a0", "Renée 😀 \u00a0", "Renée 😀 \u00a0"},
		{"CDATA end", "]]>", "]]&gt;", "]]&gt;"},
		{"empty", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(AppendEscaped([]byte("x"), c.in, false)); got != "x"+c.text {
				t.Errorf("text: got %q, want %q", got, "x"+c.text)
			}
			if got := string(AppendEscaped(nil, c.in, true)); got != c.attr {
				t.Errorf("attr: got %q, want %q", got, c.attr)
			}
		})
	}
}

func TestAppendAttrs(t *testing.T) {
	b := AppendAttr([]byte("<x"), "display", `"Bob" & co`)
	b = AppendUintAttr(b, "expires", 0)
	b = AppendUintAttr(b, "cseq", 4294967295)
	b = AppendVersionState(b, 7, true)
	b = AppendVersionState(b, 0, false)
	want := `<x display="&quot;Bob&quot; &amp; co" cseq="4294967295" version="7" state="full" version="0" state="partial"`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestIsXMLChar(t *testing.T) {
	for r, want := range map[rune]bool{
		0x7f: false, 0x80: true, 0xD7FF: true, 0xD800: false, 0xDFFF: false, 0xE000: true,
		0xFFFD: true, 0xFFFE: false, 0xFFFF: false, 0x10000: true, 0x10FFFF: true, 0x110000: false, -1: false,
	} {
		if got := IsXMLChar(r); got != want {
			t.Errorf("IsXMLChar(%#x) = %v, want %v", r, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	s40 := strings.Repeat("a", 40)
	if got := Clip(s40); got != s40 {
		t.Errorf("40 bytes clipped: %q", got)
	}
	if got := Clip(s40 + "b"); got != s40+"..." {
		t.Errorf("41 bytes: %q", got)
	}
}

// Whatever goes in, the escaped text and attribute read back through
// encoding/xml as the input with the characters XML cannot carry replaced.
func TestAppendEscapedRoundTrip(t *testing.T) {
	for _, s := range []string{"a\r\nb", " \t lead", "x\x01y", "\xff\xfe", "&lt;", "\"'<>&"} {
		checkRoundTrip(t, s)
	}
}

func checkRoundTrip(t *testing.T, s string) {
	t.Helper()
	b := []byte("<r")
	b = AppendAttr(b, "a", s)
	b = append(b, '>')
	b = AppendEscaped(b, s, false)
	b = append(b, "</r>"...)
	var v struct {
		A    string `xml:"a,attr"`
		Text string `xml:",chardata"`
	}
	if err := xml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%q: output %q does not parse: %v", s, b, err)
	}
	want := strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x80 && !IsXMLChar(r)) {
			return '\uFFFD'
		}
		return r
	}, s), "\uFFFD")
	if v.A != want || v.Text != want {
		t.Fatalf("%q: read back attr %q text %q, want %q", s, v.A, v.Text, want)
	}
	if err := testRules.CheckChars(b); err != nil {
		t.Fatalf("%q: output %q fails CheckChars: %v", s, b, err)
	}
}
