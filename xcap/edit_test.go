package xcap

import (
	"errors"
	"strings"
	"testing"
)

const (
	rlNS   = "urn:ietf:params:xml:ns:resource-lists"
	cpNS   = "urn:ietf:params:xml:ns:common-policy"
	prNS   = "urn:ietf:params:xml:ns:pres-rules"
	xmlDec = `<?xml version="1.0" encoding="UTF-8"?>`

	friends = xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends"><entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry></list></resource-lists>`
	// twoLists has formatting, a comment and an unknown extension element,
	// all of which an edit elsewhere must leave alone.
	twoLists = xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:x="urn:example:ext">
  <list name="friends">
    <entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>
    <entry uri="sip:carol@example.com"/>
    <!-- keep me -->
    <x:note x:level="2">extension</x:note>
  </list>
  <list name="work"><entry uri="sip:dave@example.com"/></list>
</resource-lists>`
	presRules = xmlDec + `<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules"><cr:rule id="a"><cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions></cr:rule></cr:ruleset>`
)

func TestSelect(t *testing.T) {
	cases := []struct {
		name, doc, defaultNS, sel string
		ns                        map[string]string
		want                      string
		err                       error
	}{
		{"element by name (RFC 4825 §6.3 by-name)", friends, rlNS, "resource-lists/list/entry/display-name", nil,
			`<display-name xmlns="urn:ietf:params:xml:ns:resource-lists">Bob</display-name>`, nil},
		{"element by attribute (by-attr)", friends, rlNS, `resource-lists/list[@name="friends"]/entry[@uri="sip:bob@example.com"]`, nil,
			`<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:bob@example.com"><display-name>Bob</display-name></entry>`, nil},
		{"element by position (by-pos)", twoLists, rlNS, `resource-lists/list[2]/entry[1]`, nil,
			`<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:dave@example.com"/>`, nil},
		{"by-pos-attr: position first, then the test", twoLists, rlNS, `resource-lists/list[1][@name="friends"]/entry[2][@uri="sip:carol@example.com"]`, nil,
			`<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:carol@example.com"/>`, nil},
		{"by-pos-attr whose element fails the test", twoLists, rlNS, `resource-lists/list[1]/entry[1][@uri="sip:carol@example.com"]`, nil, "", ErrNotFound},
		{"wildcard with position", twoLists, rlNS, `resource-lists/*[2]/*[1]`, nil,
			`<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:dave@example.com"/>`, nil},
		{"wildcard counts every element", twoLists, rlNS, `resource-lists/list[1]/*[3]`, nil,
			`<x:note xmlns:x="urn:example:ext" x:level="2">extension</x:note>`, nil},
		{"prefixed name with a URI binding", twoLists, rlNS, `resource-lists/list/e:note`, map[string]string{"e": "urn:example:ext"},
			`<x:note xmlns:x="urn:example:ext" x:level="2">extension</x:note>`, nil},
		{"attribute", friends, rlNS, `resource-lists/list/entry/@uri`, nil, `sip:bob@example.com`, nil},
		{"prefixed attribute", twoLists, rlNS, `resource-lists/list/e:note/@e:level`, map[string]string{"e": "urn:example:ext"}, `2`, nil},
		{"single-quoted test with a reference", friends, rlNS, `resource-lists/list[@name='fri&#101;nds']/@name`, nil, `friends`, nil},
		{"namespace bindings", twoLists, rlNS, `resource-lists/list[1]/namespace::*`, nil,
			`<list xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:x="urn:example:ext"/>`, nil},
		{"default namespace of another AUID", presRules, cpNS, `ruleset/rule[@id="a"]/actions/p:sub-handling`, map[string]string{"p": prNS},
			`<pr:sub-handling xmlns:pr="urn:ietf:params:xml:ns:pres-rules">allow</pr:sub-handling>`, nil},
		{"leading slash tolerated", friends, rlNS, `/resource-lists/list/@name`, nil, `friends`, nil},
		{"several elements is no element", twoLists, rlNS, `resource-lists/list`, nil, "", ErrNotFound},
		{"unprefixed name is in the AUID namespace, not none", friends, "urn:other", `resource-lists`, nil, "", ErrNotFound},
		{"missing attribute", friends, rlNS, `resource-lists/list/@nope`, nil, "", ErrNotFound},
		{"root at position 2", friends, rlNS, `resource-lists[2]`, nil, "", ErrNotFound},
		{"unbound prefix", friends, rlNS, `resource-lists/q:list`, nil, "", ErrSelector},
		{"syntax", friends, rlNS, `resource-lists/list[`, nil, "", ErrSelector},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Select([]byte(c.doc), c.defaultNS, c.sel, c.ns)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("got %q, %v; want %v", got, err, c.err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Fatalf("got  %s (%v)\nwant %s", got, err, c.want)
			}
		})
	}
}

func TestSelectAttributeEscaped(t *testing.T) {
	doc := xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a&amp;b &quot;c&quot;"/></resource-lists>`
	got, err := Select([]byte(doc), rlNS, "resource-lists/list/@name", nil)
	if err != nil || string(got) != `a&amp;b &quot;c&quot;` {
		t.Fatalf("got %q, %v", got, err)
	}
	// What Select gives, Apply takes back unchanged.
	out, err := Apply([]byte(doc), rlNS, "resource-lists/list/@name", nil, OpPut, got)
	if err != nil || string(out) != doc {
		t.Fatalf("round trip: %s, %v", out, err)
	}
}

func TestApply(t *testing.T) {
	cases := []struct {
		name, doc, sel string
		ns             map[string]string
		op             Op
		value          string
		want           string // the whole new document
		created        bool
	}{
		{"insert by attribute (RFC 4825 §8.2.3)", friends, `resource-lists/list[@name="friends"]/entry[@uri="sip:carol@example.com"]`, nil, OpPut,
			`<entry uri="sip:carol@example.com"/>`,
			xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends"><entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry><entry uri="sip:carol@example.com"/></list></resource-lists>`,
			true},
		{"insert goes after the last sibling of its name", twoLists, `resource-lists/list[@name="friends"]/entry[@uri="sip:eve@example.com"]`, nil, OpPut,
			`<entry uri="sip:eve@example.com"/>`,
			strings.Replace(twoLists, `<entry uri="sip:carol@example.com"/>`, `<entry uri="sip:carol@example.com"/><entry uri="sip:eve@example.com"/>`, 1),
			true},
		{"insert of a new name goes after the last element", twoLists, `resource-lists/list[@name="work"]/display-name`, nil, OpPut,
			`<display-name>Work</display-name>`,
			strings.Replace(twoLists, `<entry uri="sip:dave@example.com"/></list>`, `<entry uri="sip:dave@example.com"/><display-name>Work</display-name></list>`, 1),
			true},
		{"insert at position 1 goes first", twoLists, `resource-lists/list[@name="friends"]/entry[1][@uri="sip:eve@example.com"]`, nil, OpPut,
			`<entry uri="sip:eve@example.com"/>`,
			strings.Replace(twoLists, `<entry uri="sip:bob@example.com">`, `<entry uri="sip:eve@example.com"/><entry uri="sip:bob@example.com">`, 1),
			true},
		{"insert at the position after the last", twoLists, `resource-lists/list[1]/entry[3][@uri="sip:eve@example.com"]`, nil, OpPut,
			`<entry uri="sip:eve@example.com"/>`,
			strings.Replace(twoLists, `<entry uri="sip:carol@example.com"/>`, `<entry uri="sip:carol@example.com"/><entry uri="sip:eve@example.com"/>`, 1),
			true},
		{"insert into an empty element", xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"/></resource-lists>`,
			`resource-lists/list/entry[@uri="sip:x@y"]`, nil, OpPut, `<entry uri="sip:x@y"/>`,
			xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"><entry uri="sip:x@y"/></list></resource-lists>`,
			true},
		{"replace by position", friends, `resource-lists/list/entry[1]`, nil, OpPut,
			`<entry uri="sip:dave@example.com"/>`,
			xmlDec + `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends"><entry uri="sip:dave@example.com"/></list></resource-lists>`,
			false},
		{"replace by position and attribute", friends, `resource-lists/list[1][@name="friends"]/entry[1][@uri="sip:bob@example.com"]/display-name`, nil, OpPut,
			`<display-name>Robert</display-name>`,
			strings.Replace(friends, "Bob", "Robert", 1),
			false},
		{"replace keeps the document's prefix", presRules, `ruleset/rule[@id="a"]/actions/p:sub-handling`, map[string]string{"p": prNS}, OpPut,
			`<pr:sub-handling>block</pr:sub-handling>`,
			strings.Replace(presRules, "allow", "block", 1),
			false},
		{"element with its own declaration", friends, `resource-lists/list/x:info`, map[string]string{"x": "urn:x"}, OpPut,
			`<y:info xmlns:y="urn:x">i</y:info>`,
			strings.Replace(friends, `</entry></list>`, `</entry><y:info xmlns:y="urn:x">i</y:info></list>`, 1),
			true},
		{"edit leaves comments, extensions and formatting alone", twoLists, `resource-lists/list[@name="work"]/entry/@uri`, nil, OpPut,
			`sip:dan@example.com`, strings.Replace(twoLists, "sip:dave@", "sip:dan@", 1), false},
		{"new attribute", friends, `resource-lists/list/@class`, nil, OpPut, `a&amp;b`,
			strings.Replace(friends, `<list name="friends">`, `<list name="friends" class="a&amp;b">`, 1), true},
		{"new namespaced attribute declares its prefix", friends, `resource-lists/list/e:flag`, map[string]string{"e": "urn:example:ext"}, OpPut,
			`<e:flag xmlns:e="urn:example:ext"/>`,
			strings.Replace(friends, `</entry></list>`, `</entry><e:flag xmlns:e="urn:example:ext"/></list>`, 1), true},
		{"new prefixed attribute", friends, `resource-lists/list/@e:level`, map[string]string{"e": "urn:example:ext"}, OpPut, `3`,
			strings.Replace(friends, `<list name="friends">`, `<list name="friends" xmlns:e="urn:example:ext" e:level="3">`, 1), true},
		{"prefixed attribute reuses a bound prefix", twoLists, `resource-lists/list[@name="work"]/@e:level`, map[string]string{"e": "urn:example:ext"}, OpPut, `1`,
			strings.Replace(twoLists, `<list name="work">`, `<list name="work" x:level="1">`, 1), true},
		{"delete element (RFC 4825 §8.4)", twoLists, `resource-lists/list[@name="work"]/entry`, nil, OpDelete, "",
			strings.Replace(twoLists, `<list name="work"><entry uri="sip:dave@example.com"/></list>`, `<list name="work"/>`, 1), false},
		{"delete the last of its name by position", twoLists, `resource-lists/list[1]/entry[2]`, nil, OpDelete, "",
			strings.Replace(twoLists, `<entry uri="sip:carol@example.com"/>`, "", 1), false},
		{"delete attribute", friends, `resource-lists/list/@name`, nil, OpDelete, "",
			strings.Replace(friends, ` name="friends"`, "", 1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, created, err := apply([]byte(c.doc), rlNS, c.sel, c.ns, c.op, []byte(c.value))
			if c.doc == presRules {
				got, created, err = apply([]byte(c.doc), cpNS, c.sel, c.ns, c.op, []byte(c.value))
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
			if created != c.created {
				t.Fatalf("created %v, want %v", created, c.created)
			}
			// A PUT is idempotent: the selector now selects what was put
			// (RFC 4825 §7.4), a DELETE's finds nothing.
			if c.doc == presRules {
				return
			}
			sel, err := Select(got, rlNS, c.sel, c.ns)
			switch {
			case c.op == OpDelete && !errors.Is(err, ErrNotFound):
				t.Fatalf("after DELETE the selector finds %q, %v", sel, err)
			case c.op == OpPut && err != nil:
				t.Fatalf("after PUT the selector finds nothing: %v", err)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	cases := []struct {
		name, doc, sel string
		op             Op
		value          string
		tag            string // of the *Error; "" for ErrNotFound
		ancestor       string
	}{
		{"body does not match the selector", friends, `resource-lists/list/entry[@uri="sip:y@example.com"]`, OpPut, `<entry uri="sip:x@example.com"/>`, "cannot-insert", ""},
		{"replacement changes the key", friends, `resource-lists/list/entry[@uri="sip:bob@example.com"]`, OpPut, `<entry uri="sip:x@example.com"/>`, "cannot-insert", ""},
		{"replacement changes the name", friends, `resource-lists/list/entry`, OpPut, `<list name="x"/>`, "cannot-insert", ""},
		{"body in another namespace", friends, `resource-lists/list/entry[2]`, OpPut, `<entry xmlns="urn:other"/>`, "cannot-insert", ""},
		{"position beyond the siblings", friends, `resource-lists/list/entry[3]`, OpPut, `<entry uri="sip:x@example.com"/>`, "cannot-insert", ""},
		{"a second root", friends, `other`, OpPut, `<other/>`, "cannot-insert", ""},
		{"root without its namespace", friends, `resource-lists`, OpPut, `<resource-lists/>`, "cannot-insert", ""},
		{"no parent list", friends, `resource-lists/list[@name="family"]/entry`, OpPut, `<entry uri="sip:x@example.com"/>`, "no-parent", "resource-lists"},
		{"no parent two levels down", friends, `resource-lists/list[@name="friends"]/entry[@uri="sip:zed@example.com"]/display-name`, OpPut, `<display-name>Z</display-name>`, "no-parent", `resource-lists/list[@name="friends"]`},
		{"no parent at the root", friends, `other/list`, OpPut, `<list/>`, "no-parent", ""},
		{"attribute of a missing element", friends, `resource-lists/list[@name="x"]/@name`, OpPut, `x`, "no-parent", "resource-lists"},
		{"not a fragment: two elements", friends, `resource-lists/list/entry[2]`, OpPut, `<entry/><entry/>`, "not-xml-frag", ""},
		{"not a fragment: unclosed", friends, `resource-lists/list/entry[2]`, OpPut, `<entry>`, "not-xml-frag", ""},
		{"not a fragment: text", friends, `resource-lists/list/entry[2]`, OpPut, `entry`, "not-xml-frag", ""},
		{"fragment not UTF-8", friends, `resource-lists/list/entry[2]`, OpPut, "<entry uri=\"\xff\"/>", "not-utf-8", ""},
		{"attribute value with <", friends, `resource-lists/list/@name`, OpPut, `a<b`, "not-xml-att-value", ""},
		{"attribute value with a bare &", friends, `resource-lists/list/@name`, OpPut, `a&b`, "not-xml-att-value", ""},
		{"attribute value with a bad reference", friends, `resource-lists/list/@name`, OpPut, `&#0;`, "not-xml-att-value", ""},
		{"attribute value not UTF-8", friends, `resource-lists/list/@name`, OpPut, "\xfe", "not-utf-8", ""},
		{"delete would select the next one", twoLists, `resource-lists/list[1]/entry[1]`, OpDelete, "", "cannot-delete", ""},
		{"delete the root", friends, `resource-lists`, OpDelete, "", "cannot-delete", ""},
		{"delete a missing element", friends, `resource-lists/list/entry[2]`, OpDelete, "", "", ""},
		{"delete a missing attribute", friends, `resource-lists/list/@nope`, OpDelete, "", "", ""},
		{"document not well-formed", `<resource-lists>`, `resource-lists/list`, OpDelete, "", "not-well-formed", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := Apply([]byte(c.doc), rlNS, c.sel, nil, c.op, []byte(c.value))
			if out != nil {
				t.Fatalf("got a document %s", out)
			}
			if c.tag == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("got %v, want ErrNotFound", err)
				}
				return
			}
			var xe *Error
			if !errors.As(err, &xe) || xe.Tag != c.tag {
				t.Fatalf("got %v, want <%s>", err, c.tag)
			}
			if xe.Ancestor != c.ancestor {
				t.Fatalf("ancestor %q, want %q", xe.Ancestor, c.ancestor)
			}
		})
	}
	if _, err := Apply([]byte(friends), rlNS, "resource-lists/namespace::*", nil, OpDelete, nil); !errors.Is(err, ErrSelector) {
		t.Fatalf("namespace bindings deleted: %v", err)
	}
}

func TestApplyLimits(t *testing.T) {
	deep := strings.Repeat("<a>", maxDepth-3) + strings.Repeat("</a>", maxDepth-3)
	// The list is at depth 2: a fragment nesting maxDepth-2 fits, one more
	// does not.
	ok := `<e:a xmlns:e="urn:e">` + deep + `</e:a>`
	if _, err := Apply([]byte(friends), rlNS, "resource-lists/list/e:a", map[string]string{"e": "urn:e"}, OpPut, []byte(ok)); err != nil {
		t.Fatalf("fragment at the depth limit refused: %v", err)
	}
	tooDeep := `<e:a xmlns:e="urn:e"><a>` + deep + `</a></e:a>`
	_, err := Apply([]byte(friends), rlNS, "resource-lists/list/e:a", map[string]string{"e": "urn:e"}, OpPut, []byte(tooDeep))
	var xe *Error
	if !errors.As(err, &xe) || xe.Tag != "constraint-failure" {
		t.Fatalf("fragment beyond the depth limit: %v", err)
	}
}

func TestErrorBody(t *testing.T) {
	cases := []struct {
		e    Error
		want string
	}{
		{Error{Tag: "not-well-formed"}, `<not-well-formed/>`},
		{Error{Tag: "cannot-insert", Phrase: `a "b" <c>`}, `<cannot-insert phrase="a &quot;b&quot; &lt;c&gt;"/>`},
		{Error{Tag: "no-parent", Ancestor: "http://x/a?b&c"}, `<no-parent><ancestor>http://x/a?b&amp;c</ancestor></no-parent>`},
		{Error{Tag: "uniqueness-failure", Exists: []Exists{{Field: "list/@name", AltValues: []string{"a1", "a2"}}, {Field: "x"}}},
			`<uniqueness-failure><exists field="list/@name"><alt-value>a1</alt-value><alt-value>a2</alt-value></exists><exists field="x"/></uniqueness-failure>`},
		{Error{Tag: "bad tag<"}, `<constraint-failure/>`},
	}
	for _, c := range cases {
		want := xmlDec + "\n" + `<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error">` + c.want + "</xcap-error>\n"
		if got := string(c.e.Body()); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if got := (&Error{Tag: "no-parent", Phrase: "p"}).Error(); got != "xcap: no-parent: p" {
		t.Errorf("Error() = %q", got)
	}
}
