package xmltree

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

var testLimits = Limits{MaxDepth: 4, MaxElements: 10, MaxAttrs: 4}

const decl = `<?xml version="1.0" encoding="UTF-8"?>`

func TestRoundTrip(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"declaration written anew", `<?xml version='1.0' encoding='utf-8'?><r xmlns="urn:x"/>`, decl + `<r xmlns="urn:x"/>`},
		{"prefixes and declarations kept in place",
			`<p:r xmlns:p="urn:p" xmlns="urn:d" a="1"><e p:b="2"/><x:ext xmlns:x="urn:x">t</x:ext></p:r>`,
			decl + `<p:r xmlns:p="urn:p" xmlns="urn:d" a="1"><e p:b="2"/><x:ext xmlns:x="urn:x">t</x:ext></p:r>`},
		{"white space, comments, PIs kept", "<r>\n  <!-- c -->\n  <?pi data?>\n  <e/>\n</r>", decl + "<r>\n  <!-- c -->\n  <?pi data?>\n  <e/>\n</r>"},
		{"prolog and epilog", "<!-- a --><r/><!-- b -->", decl + "<!-- a --><r/><!-- b -->"},
		{"escapes normalised", `<r a='x"&amp;&lt;'>&gt;&#65;<![CDATA[<&]]></r>`, decl + `<r a="x&quot;&amp;&lt;">&gt;A&lt;&amp;</r>`},
		{"attribute line breaks survive", "<r a=\"x&#xA;y\"/>", decl + `<r a="x&#xA;y"/>`},
		{"UTF-8 BOM dropped", "\xef\xbb\xbf<r>é</r>", decl + "<r>é</r>"},
		{"empty element written short", "<r></r>", decl + "<r/>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(c.in), Limits{MaxDepth: 8, MaxElements: 100, MaxAttrs: 8})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(d.Bytes()); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	d, err := Parse([]byte(`<r xmlns="urn:d" xmlns:p="urn:p"><p:e a="1" p:b="2"><f xmlns=""/></p:e></r>`), testLimits)
	if err != nil {
		t.Fatal(err)
	}
	r := d.Root
	e := r.Elements()[0]
	f := e.Elements()[0]
	if r.Space != "urn:d" || e.Space != "urn:p" || f.Space != "" {
		t.Fatalf("spaces %q %q %q", r.Space, e.Space, f.Space)
	}
	if v, ok := e.AttrValue("urn:p", "b"); !ok || v != "2" {
		t.Fatalf("p:b = %q %v", v, ok)
	}
	if v, ok := e.AttrValue("", "a"); !ok || v != "1" {
		t.Fatalf("a = %q %v", v, ok)
	}
	if p, ok := f.PrefixFor("urn:p", false); !ok || p != "p" {
		t.Fatalf("PrefixFor = %q %v", p, ok)
	}
	if _, ok := f.PrefixFor("urn:d", true); ok {
		t.Fatal("urn:d is shadowed by xmlns=\"\" at f, yet found")
	}
}

func TestTextRunsMerge(t *testing.T) {
	d, err := Parse([]byte(`<r>a<![CDATA[<b>]]>c&amp;<!-- x -->d<e/></r>`), testLimits)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range d.Root.Children {
		got = append(got, fmt.Sprintf("%d:%s", c.Kind, c.Data))
	}
	if want := []string{"1:a<b>c&", "2: x ", "1:d", "0:"}; !slices.Equal(got, want) {
		t.Fatalf("children %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, in string
		kind     error
	}{
		{"unbound prefix", `<p:r/>`, ErrSyntax},
		{"unbound attribute prefix", `<r p:a="1"/>`, ErrSyntax},
		{"repeated attribute", `<r a="1" a="2"/>`, ErrSyntax},
		{"repeated by namespace", `<r xmlns:p="urn:x" xmlns:q="urn:x" p:a="1" q:a="2"/>`, ErrSyntax},
		{"mismatched end tag", `<r></s>`, ErrSyntax},
		{"prefix differs in end tag", `<p:r xmlns:p="u" xmlns:q="u"></q:r>`, ErrSyntax},
		{"two roots", `<r/><r/>`, ErrSyntax},
		{"text outside", `<r/>x`, ErrSyntax},
		{"no root", `<!-- x -->`, ErrSyntax},
		{"DTD", `<!DOCTYPE r><r/>`, ErrSyntax},
		{"unclosed", `<r>`, ErrSyntax},
		{"two colons", `<a:b:c xmlns:a="u"/>`, ErrSyntax},
		{"empty prefix declaration", `<r xmlns:p=""/>`, ErrSyntax},
		{"xmlns prefix declared", `<r xmlns:xmlns="u"/>`, ErrSyntax},
		{"control character", "<r>\x01</r>", ErrSyntax},
		{"control character in a comment", "<r><!--\x01--></r>", ErrSyntax},
		{"invalid UTF-8", "<r>\xff</r>", ErrEncoding},
		{"other encoding declared", `<?xml version="1.0" encoding="ISO-8859-1"?><r/>`, ErrEncoding},
		{"too deep", `<a><b><c><d><e/></d></c></b></a>`, ErrLimit},
		{"too many elements", `<r><a/><a/><a/><a/><a/><a/><a/><a/><a/><a/></r>`, ErrLimit},
		{"too many attributes", `<r a="1" b="2" c="3" d="4" e="5"/>`, ErrLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in), testLimits)
			if !errors.Is(err, c.kind) {
				t.Fatalf("got %v, want %v", err, c.kind)
			}
		})
	}
	if _, err := Parse([]byte(`<a><b><c><d/></c></b></a>`), testLimits); err != nil {
		t.Fatalf("depth at the limit refused: %v", err)
	}
}

func TestParseFragment(t *testing.T) {
	d, err := Parse([]byte(`<r xmlns="urn:d" xmlns:p="urn:p"><l/></r>`), testLimits)
	if err != nil {
		t.Fatal(err)
	}
	parent := d.Root.Elements()[0]
	el, err := ParseFragment([]byte(` <?xml version="1.0"?><!-- c --><e p:a="1"><p:f/></e> `), parent, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if el.Space != "urn:d" || el.Elements()[0].Space != "urn:p" || el.Parent != parent {
		t.Fatalf("fragment not resolved in its parent's scope: %q %q", el.Space, el.Elements()[0].Space)
	}
	for _, bad := range []string{``, `text`, `<a/><b/>`, `<a>`, `<a/>text`, `<q:a/>`} {
		if _, err := ParseFragment([]byte(bad), parent, testLimits); !errors.Is(err, ErrFragment) {
			t.Errorf("%q: got %v, want ErrFragment", bad, err)
		}
	}
	// The parent's depth (2) counts: the fragment may nest 2 more.
	if _, err := ParseFragment([]byte(`<a><b/></a>`), parent, testLimits); err != nil {
		t.Errorf("fragment within the depth limit refused: %v", err)
	}
	if _, err := ParseFragment([]byte(`<a><b><c/></b></a>`), parent, testLimits); !errors.Is(err, ErrLimit) {
		t.Errorf("fragment beyond the depth limit: got %v", err)
	}
}

func TestAppendStandalone(t *testing.T) {
	d, err := Parse([]byte(`<r xmlns="urn:d" xmlns:p="urn:p" xmlns:q="urn:q"><p:e x="1"><f p:a="2"/><g xmlns:q="urn:q2"><q:h/></g></p:e></r>`), Limits{MaxDepth: 8, MaxElements: 100, MaxAttrs: 8})
	if err != nil {
		t.Fatal(err)
	}
	e := d.Root.Elements()[0]
	got := string(e.AppendStandalone(nil))
	want := `<p:e xmlns="urn:d" xmlns:p="urn:p" x="1"><f p:a="2"/><g xmlns:q="urn:q2"><q:h/></g></p:e>`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// What it wrote reads alone with the same names.
	alone, err := Parse([]byte(got), Limits{MaxDepth: 8, MaxElements: 100, MaxAttrs: 8})
	if err != nil {
		t.Fatal(err)
	}
	if alone.Root.Space != "urn:p" || alone.Root.Elements()[0].Space != "urn:d" {
		t.Fatal("namespaces changed")
	}
}

func TestInScope(t *testing.T) {
	d, err := Parse([]byte(`<r xmlns="urn:d" xmlns:p="urn:p"><e xmlns:p="urn:p2" xmlns:q="urn:q"/></r>`), testLimits)
	if err != nil {
		t.Fatal(err)
	}
	got := d.Root.Elements()[0].InScope()
	want := map[string]string{"": "urn:d", "p": "urn:p2", "q": "urn:q"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`<r xmlns="urn:d" xmlns:p="urn:p"><p:e a="1"/>text<!--c--><?pi x?></r>`,
		`<?xml version="1.0" encoding="UTF-8"?><a><b/><![CDATA[x]]></a>`,
		`<r a="&#xA;&amp;"/>`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxDepth: 16, MaxElements: 200, MaxAttrs: 16}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b, lim)
		if err != nil {
			return
		}
		// What Parse accepts, Bytes writes back parseable and stable.
		out := d.Bytes()
		d2, err := Parse(out, lim)
		if err != nil {
			t.Fatalf("output does not parse: %v\nin  %q\nout %q", err, b, out)
		}
		if out2 := d2.Bytes(); string(out2) != string(out) {
			t.Fatalf("not stable:\n%q\n%q", out, out2)
		}
		if s := string(d.Root.AppendStandalone(nil)); !strings.HasPrefix(s, "<") {
			t.Fatalf("standalone %q", s)
		}
	})
}
