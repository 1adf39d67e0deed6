package xcap

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	cases := []struct {
		in    string
		steps []step
		term  terminal
		attr  qname
	}{
		{"resource-lists", []step{{name: qname{local: "resource-lists"}, text: "resource-lists"}}, termNone, qname{}},
		{`a/b[2]/*[@x="1"]/p:c[3][@q:y='v/]"']`, []step{
			{name: qname{local: "a"}, text: "a"},
			{name: qname{local: "b"}, pos: 2, text: "b[2]"},
			{any: true, hasAttr: true, attr: qname{local: "x"}, value: "1", text: `*[@x="1"]`},
			{name: qname{"p", "c"}, pos: 3, hasAttr: true, attr: qname{"q", "y"}, value: `v/]"`, text: `p:c[3][@q:y='v/]"']`},
		}, termNone, qname{}},
		{"a/b/@p:c", []step{{name: qname{local: "a"}, text: "a"}, {name: qname{local: "b"}, text: "b"}}, termAttribute, qname{"p", "c"}},
		{"a/namespace::*", []step{{name: qname{local: "a"}, text: "a"}}, termNamespace, qname{}},
		{`a[@b="&lt;&#x41;&#66;"]`, []step{{name: qname{local: "a"}, hasAttr: true, attr: qname{local: "b"}, value: "<AB", text: `a[@b="&lt;&#x41;&#66;"]`}}, termNone, qname{}},
		{"/a", []step{{name: qname{local: "a"}, text: "a"}}, termNone, qname{}},
	}
	for _, c := range cases {
		sel, err := parseSelector(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(sel.steps, c.steps) || sel.term != c.term || sel.attr != c.attr {
			t.Errorf("%s:\ngot  %+v %v %v\nwant %+v %v %v", c.in, sel.steps, sel.term, sel.attr, c.steps, c.term, c.attr)
		}
	}
}

func TestParseSelectorErrors(t *testing.T) {
	for _, in := range []string{
		"", "/", "a//b", "a/", "a[", "a]", "a[0]", "a[-1]", "a[1", "a[x]", `a[@b=c]`, `a[@b="c]`, `a[@b="c"`,
		`a[@b="<"]`, `a[@b="&"]`, `a[@b="&bogus;"]`, "a[1][2]", `a[@b="1"][2]`, "@a", "namespace::*", "a/@b/c",
		"a/namespace::*/b", "1a", "a:", ":a", "a:b:c", "a b", "a/@", "a[99999999999]",
		strings.Repeat("a/", maxSteps) + "a", strings.Repeat("x", maxSelectorLen+1),
	} {
		if sel, err := parseSelector(in); !errors.Is(err, ErrSelector) {
			t.Errorf("%q: got %+v, %v; want ErrSelector", in, sel, err)
		}
	}
}

func TestParseBindings(t *testing.T) {
	got, err := parseBindings(`xmlns(a=urn:a) xmlns(b = urn:b^(x^)^^)other(ignored(nested))xmlns(c=urn:c)`)
	want := map[string]string{"a": "urn:a", "b": "urn:b(x)^", "c": "urn:c"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	if got, err := parseBindings(""); err != nil || got != nil {
		t.Fatalf("empty: %v, %v", got, err)
	}
	for _, in := range []string{"xmlns(a=urn:a", "xmlns(a)", "xmlns(=u)", "xmlns(1a=u)", "xmlns(xmlns=u)", "xmlns(a=)", "(x)", "xmlns(a=u^x)", "junk",
		bindings(maxBindings + 1)} {
		if _, err := parseBindings(in); !errors.Is(err, ErrSelector) {
			t.Errorf("%q: got %v, want ErrSelector", in, err)
		}
	}
	if _, err := parseBindings(bindings(maxBindings)); err != nil {
		t.Errorf("%d bindings refused: %v", maxBindings, err)
	}
}

func bindings(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("xmlns(p")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString("=urn:x)")
	}
	return b.String()
}
