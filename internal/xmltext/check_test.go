package xmltext

import (
	"errors"
	"strings"
	"testing"
)

var errTestTooLarge = errors.New("t: too large")

// testRules has small limits so that the limit cases stay readable.
var testRules = Rules{Prefix: "t", MaxSize: 200, MaxDepth: 3, TooLarge: errTestTooLarge}

func TestPrepare(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{"no declaration", "<r>é</r>", "<r>é</r>", ""},
		{"UTF-8 BOM dropped", "\xef\xbb\xbf<r/>", "<r/>", ""},
		{"declared UTF-8", `<?xml version="1.0" encoding="UTF-8"?><r>é</r>`, `<?xml version="1.0" encoding="UTF-8"?><r>é</r>`, ""},
		{"latin-1 transcoded", "<?xml version='1.0' encoding='ISO-8859-1'?><r>Ren\xe9</r>", "<?xml version='1.0' encoding='ISO-8859-1'?><r>René</r>", ""},
		{"latin1 alias, spaces around =", "<?xml version='1.0' encoding =\t\"latin1\"?><r>\xff</r>", "<?xml version='1.0' encoding =\t\"latin1\"?><r>ÿ</r>", ""},
		{"US-ASCII without high bytes", `<?xml version="1.0" encoding="us-ascii"?><r/>`, `<?xml version="1.0" encoding="us-ascii"?><r/>`, ""},
		{"other encoding refused", `<?xml version="1.0" encoding="KOI8-R"?><r/>`, "", `t: unsupported encoding "KOI8-R", want UTF-8`},
		{"long encoding name clipped", `<?xml version="1.0" encoding="` + strings.Repeat("x", 50) + `"?><r/>`, "",
			`t: unsupported encoding "` + strings.Repeat("x", 40) + `...", want UTF-8`},
		{"unterminated declaration ignored", `<?xml version="1.0" encoding="KOI8-R"`, `<?xml version="1.0" encoding="KOI8-R"`, ""},
		{"unquoted encoding ignored", `<?xml encoding=KOI8-R?><r/>`, `<?xml encoding=KOI8-R?><r/>`, ""},
		{"declaration not at start ignored", ` <?xml version="1.0" encoding="KOI8-R"?><r/>`, ` <?xml version="1.0" encoding="KOI8-R"?><r/>`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := testRules.Prepare([]byte(c.in))
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("got %q, %v; want error %q", got, err, c.err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestPrepareSize(t *testing.T) {
	if _, err := testRules.Prepare([]byte(strings.Repeat(" ", 200))); err != nil {
		t.Fatalf("MaxSize bytes refused: %v", err)
	}
	_, err := testRules.Prepare([]byte(strings.Repeat(" ", 201)))
	if !errors.Is(err, errTestTooLarge) || err.Error() != "t: too large (201 bytes)" {
		t.Fatalf("got %v, want wrapped TooLarge", err)
	}
}

func TestCheck(t *testing.T) {
	const ns = "urn:x"
	cases := []struct {
		name, in, err string
	}{
		{"minimal", `<r xmlns="urn:x"/>`, ""},
		{"prefixed root, comments, PI, white space around", ` <!-- c --><p:r xmlns:p="urn:x"><a/></p:r><?pi x?>` + "\n", ""},
		{"depth at the limit", `<r xmlns="urn:x"><a><b/></a></r>`, ""},
		{"too deep", `<r xmlns="urn:x"><a><b><c/></b></a></r>`, "t: elements nested deeper than 3"},
		{"DOCTYPE", `<!DOCTYPE r [<!ENTITY e "x">]><r xmlns="urn:x"/>`, "t: DTDs and other <!...> declarations are not allowed"},
		{"two roots", `<r xmlns="urn:x"/><r xmlns="urn:x"/>`, "t: more than one root element"},
		{"text after root", `<r xmlns="urn:x"/>junk`, "t: text outside the root element"},
		{"wrong name", `<s xmlns="urn:x"/>`, "t: root element is <s> in urn:x, want <r> in urn:x"},
		{"no namespace", `<r/>`, "t: root element is <r>, want <r> in urn:x"},
		{"empty", ``, "t: no root element"},
		{"only a comment", `<!-- x -->`, "t: no root element"},
		{"unclosed", `<r xmlns="urn:x">`, "t: malformed XML: XML syntax error on line 1: unexpected EOF"},
		{"mismatched", `<r xmlns="urn:x"></s>`, "t: malformed XML: XML syntax error on line 1: element <r> closed by </s>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, testRules.Check([]byte(c.in), ns, "r"), c.err)
		})
	}
}

// wantErr fails t unless err has the text want, or is nil when want is
// empty.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("refused: %v", err)
	case want != "" && (err == nil || err.Error() != want):
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestDecode(t *testing.T) {
	var v struct {
		A string `xml:"a,attr"`
		B string `xml:"urn:x b"`
	}
	in := "<?xml version='1.0' encoding='iso-8859-1'?><r xmlns='urn:x' a='\xe9'><b>ok</b></r>"
	if err := testRules.Decode([]byte(in), "urn:x", "r", &v); err != nil {
		t.Fatal(err)
	}
	if v.A != "é" || v.B != "ok" {
		t.Fatalf("decoded %+v", v)
	}
	for in, want := range map[string]string{
		strings.Repeat(" ", 201):                  "t: too large (201 bytes)",
		`<?xml encoding="utf-16"?><r/>`:           `t: unsupported encoding "utf-16", want UTF-8`,
		`<r xmlns="urn:x"><b><b><b/></b></b></r>`: "t: elements nested deeper than 3",
		// Passes Check; the decoder's own error is prefixed too.
		`<r xmlns="urn:x"><n>x</n></r>`: `t: strconv.ParseInt: parsing "x": invalid syntax`,
	} {
		var w struct {
			N int `xml:"urn:x n"`
		}
		err := testRules.Decode([]byte(in), "urn:x", "r", &w)
		if err == nil || err.Error() != want {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func TestCheckChars(t *testing.T) {
	cases := []struct {
		name, in, err string
	}{
		{"allowed", "<r>\t\r\n é \U0001F600 \x7f</r>", ""},
		{"NUL in a comment", "<r><!--\x00--></r>", "t: control character 0x00 at byte 7"},
		{"escape", "<r>\x1b</r>", "t: control character 0x1b at byte 3"},
		{"invalid UTF-8", "<r>\xc3</r>", "t: invalid UTF-8 or character at byte 3"},
		{"U+FFFE", "ab\uFFFE", "t: invalid UTF-8 or character at byte 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, testRules.CheckChars([]byte(c.in)), c.err)
		})
	}
}

func TestVersioned(t *testing.T) {
	str := func(s string) *string { return &s }
	cases := []struct {
		name    string
		version *string
		state   string
		v       uint32
		full    bool
		err     string
	}{
		{"full", str("0"), "full", 0, true, ""},
		{"partial, spaces and max", str(" 4294967295 "), "partial", 4294967295, false, ""},
		{"missing version", nil, "full", 0, false, "t: <root> has no version attribute"},
		{"overflow", str("4294967296"), "full", 0, false, `t: version "4294967296" is not a 32-bit unsigned number`},
		{"negative", str("-1"), "full", 0, false, `t: version "-1" is not a 32-bit unsigned number`},
		{"bad state", str("1"), "Full", 0, false, `t: state "Full", want full or partial`},
		{"version checked before state", str("x"), "", 0, false, `t: version "x" is not a 32-bit unsigned number`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, full, err := testRules.Versioned("root", c.version, c.state)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || v != c.v || full != c.full {
				t.Fatalf("got %d %v %v, want %d %v", v, full, err, c.v, c.full)
			}
		})
	}
}
