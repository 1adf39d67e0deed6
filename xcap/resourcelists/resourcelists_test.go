package resourcelists

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	rfcEntryRef = "resource-lists/users/sip:bill@example.com/index/~~/resource-lists/list%5b@name=%22list1%22%5d/entry%5b@uri=%22sip:petri@example.com%22%5d"
	rfcAnchor   = "http://xcap.example.org/resource-lists/users/sip:a@example.org/index/~~/resource-lists/list%5b@name=%22mkting%22%5d"
)

// The resource-lists example of RFC 4826 §3.3, and a softphone's buddy
// lists with extension elements, blanks around a URI and a duplicate
// across sub-lists.
func TestParseExamples(t *testing.T) {
	cases := []struct {
		file string
		want Lists
	}{
		{"rfc4826-resource-lists.xml", Lists{Lists: []List{{
			Name:      "friends",
			Entries:   []Entry{{URI: "sip:bill@example.com", DisplayName: "Bill Doe"}},
			EntryRefs: []string{rfcEntryRef},
			Lists: []List{{
				Name: "close-friends", DisplayName: "Close Friends",
				Entries:  []Entry{{URI: "sip:joe@example.com", DisplayName: "Joe Smith"}, {URI: "sip:nancy@example.com", DisplayName: "Nancy Gross"}},
				External: []string{rfcAnchor},
			}},
		}}}},
		{"buddies.xml", Lists{Lists: []List{{
			Name: "oma_buddylist", DisplayName: "Buddies",
			Entries: []Entry{{URI: "sip:bob@example.com", DisplayName: "Bob"}, {URI: "sip:carol@example.com"}},
			Lists: []List{
				{Name: "work", Entries: []Entry{{URI: "sip:dave@example.com"}, {URI: "sip:bob@example.com", DisplayName: "Bob at work"}},
					Lists: []List{{Name: "deep", Entries: []Entry{{URI: "sip:erin@example.com"}}}}},
				{Name: "family", Entries: []Entry{{URI: "sip:mum@example.net", DisplayName: "Mum"}}},
			},
		}, {Name: "oma_blockedlist"}}}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in := readFile(t, c.file)
			got, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got\n%+v\nwant\n%+v", *got, c.want)
			}
			if err := Validate(in); err != nil {
				t.Errorf("Validate: %v", err)
			}
			again, err := Parse(got.Append(nil))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Append round trip: %v\n%+v", err, again)
			}
		})
	}
}

// A list a subscription covers: entries before sub-lists, depth first,
// the first entry of a URI kept.
func TestFlatten(t *testing.T) {
	ls, err := Parse(readFile(t, "buddies.xml"))
	if err != nil {
		t.Fatal(err)
	}
	all := []Entry{
		{URI: "sip:bob@example.com", DisplayName: "Bob"},
		{URI: "sip:carol@example.com"},
		{URI: "sip:dave@example.com"},
		{URI: "sip:erin@example.com"},
		{URI: "sip:mum@example.net", DisplayName: "Mum"},
	}
	for _, n := range []int{100, 5, 3, 1, 0, -1} {
		got := ls.Lists[0].Flatten(n)
		want := all[:min(max(n, 0), len(all))]
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Flatten(%d) = %+v, want %+v", n, got, want)
		}
	}
	if got := ls.Lists[1].Flatten(10); got != nil {
		t.Errorf("empty list flattened to %+v", got)
	}
}

// An XCAP node selector returns one <list> with its own namespace
// declaration; inside an rls-services document the list element is in
// that namespace, its children in resource-lists.
func TestParseList(t *testing.T) {
	cases := []struct {
		name, in string
		want     List
	}{
		{"resource-lists", `<list xmlns="urn:ietf:params:xml:ns:resource-lists" name="close-friends"><display-name>Close</display-name>` +
			`<entry uri="sip:joe@example.com"/><list name="inner"><entry uri="sip:x@example.com"/></list></list>`,
			List{Name: "close-friends", DisplayName: "Close", Entries: []Entry{{URI: "sip:joe@example.com"}},
				Lists: []List{{Name: "inner", Entries: []Entry{{URI: "sip:x@example.com"}}}}}},
		{"prefixed", `<rl:list xmlns:rl="urn:ietf:params:xml:ns:resource-lists"><rl:entry uri="sip:a@b"/></rl:list>`,
			List{Entries: []Entry{{URI: "sip:a@b"}}}},
		{"rls-services inline", `<list xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists" name="m">` +
			`<rl:entry uri="sip:joe@example.com"/></list>`,
			List{Name: "m", Entries: []Entry{{URI: "sip:joe@example.com"}}}},
		{"latin-1", "<?xml version='1.0' encoding='ISO-8859-1'?><list xmlns='urn:ietf:params:xml:ns:resource-lists'><entry uri='sip:j@h'><display-name>J\xfcrgen</display-name></entry></list>",
			List{Entries: []Entry{{URI: "sip:j@h", DisplayName: "Jürgen"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseList([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got %+v\nwant %+v", *got, c.want)
			}
			again, err := ParseList(got.Append(nil))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Append round trip: %v\n%+v\n%s", err, again, got.Append(nil))
			}
		})
	}
	for _, bad := range []string{
		`<list name="x"/>`,
		`<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:a@b"/>`,
		`<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>`,
		`<list xmlns="urn:ietf:params:xml:ns:pidf"/>`,
		`<list xmlns="urn:ietf:params:xml:ns:resource-lists"><entry/></list>`,
		``,
	} {
		if l, err := ParseList([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "resourcelists: ") {
			t.Errorf("ParseList(%s) = %+v, %v", bad, l, err)
		}
	}
}

func TestValidate(t *testing.T) {
	doc := func(s string) string {
		return `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` + s + `</resource-lists>`
	}
	cases := []struct{ name, in, want string }{
		{"top-level names", doc(`<list name="a"/><list name="a"/>`), `two top-level lists named "a"`},
		{"nested names", doc(`<list name="a"><list name="b"/><list name="c"><list name="b"/></list><list name="b"/></list>`), `two lists named "b" in list "a"`},
		{"deep path", doc(`<list name="a"><list name="c"><list name="d"/><list name="d"/></list></list>`), `in list "a/c"`},
		{"entry uris", doc(`<list name="a"><entry uri="sip:x@h"/><entry uri="sip:y@h"/><entry uri=" sip:x@h"/></list>`), `list "a": entry "sip:x@h" appears twice`},
		{"entry uris in sub-list", doc(`<list name="a"><list name="b"><entry uri="sip:x@h"/><entry uri="sip:x@h"/></list></list>`), `list "a/b": entry "sip:x@h"`},
		{"entry-refs", doc(`<list><entry-ref ref="a/b"/><entry-ref ref="a/b"/></list>`), `unnamed list: entry-ref "a/b" appears twice`},
		{"absolute entry-ref", doc(`<list name="a"><entry-ref ref="http://xcap.example.com/resource-lists/x"/></list>`), "not a path relative to the XCAP root"},
		{"rooted entry-ref", doc(`<list name="a"><entry-ref ref="/resource-lists/x"/></list>`), "not a path relative"},
		{"anchors", doc(`<list name="a"><external anchor="http://h/x"/><external anchor="http://h/x"/></list>`), `external anchor "http://h/x" appears twice`},
		{"relative anchor", doc(`<list name="a"><external anchor="resource-lists/x"/></list>`), "not an absolute HTTP URI"},
		{"sip anchor", doc(`<list name="a"><external anchor="sip:list@example.com"/></list>`), "not an absolute HTTP URI"},
		{"missing anchor", doc(`<list name="a"><external/></list>`), `external anchor "" is not`},
		{"entry without uri", doc(`<list name="a"><entry/></list>`), "<entry> without uri"},
		{"entry-ref without ref", doc(`<list name="a"><entry-ref ref=" "/></list>`), "<entry-ref> without ref"},
		{"not well-formed", doc(`<list>`), "malformed XML"},
		{"wrong root", `<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"/>`, "want <resource-lists>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate([]byte(c.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "resourcelists: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	// What the constraints allow: equal names and URIs in different
	// parents, unnamed siblings, an https anchor.
	ok := doc(`<list name="a"><entry uri="sip:x@h"/><list name="a"><entry uri="sip:x@h"/></list><list/><list/>` +
		`<external anchor="https://xcap.example.com/resource-lists/users/sip:b@h/index/~~/resource-lists/list%5b@name=%22x%22%5d"/>` +
		`<entry-ref ref="resource-lists/users/sip:b@h/index/~~/resource-lists/list%5b1%5d/entry%5b1%5d"/></list><list name="b"><entry uri="sip:x@h"/></list>`)
	if err := Validate([]byte(ok)); err != nil {
		t.Errorf("valid document refused: %v", err)
	}
}

func TestParseLimits(t *testing.T) {
	head := `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l">`
	tail := `</list></resource-lists>`
	entries := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `<entry uri="sip:%d@h"/>`, i)
		}
		return b.String()
	}
	// One list plus MaxItems-1 entries is the most a document holds.
	if ls, err := Parse([]byte(head + entries(MaxItems-1) + tail)); err != nil || len(ls.Lists[0].Entries) != MaxItems-1 {
		t.Errorf("at the limit: %v", err)
	}
	if _, err := Parse([]byte(head + entries(MaxItems) + tail)); err == nil || !strings.Contains(err.Error(), "more than 10000") {
		t.Errorf("above the limit: %v", err)
	}
	if _, err := Parse([]byte(head + strings.Repeat(`<list>`, MaxDepth) + strings.Repeat(`</list>`, MaxDepth) + tail)); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Errorf("too deep: %v", err)
	}
	if _, err := Parse([]byte(head + strings.Repeat(" ", MaxSize) + tail)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := ParseList([]byte(`<list xmlns="urn:ietf:params:xml:ns:resource-lists">` + strings.Repeat(" ", MaxSize) + `</list>`)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized list: %v", err)
	}
	if _, err := Parse([]byte(`<!DOCTYPE r [<!ENTITY a "aaaa">]>` + head + tail)); err == nil || !strings.Contains(err.Error(), "DTD") {
		t.Errorf("DTD: %v", err)
	}
}

func TestAppendExact(t *testing.T) {
	ls := Lists{Lists: []List{{Name: "friends", DisplayName: "Friends & co", Entries: []Entry{{URI: "sip:bob@example.com", DisplayName: "Bob"}, {URI: "sip:carol@example.com"}},
		EntryRefs: []string{"resource-lists/x"}, External: []string{"http://h/y"}, Lists: []List{{Name: "inner"}}}}}
	want := `<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
<list name="friends">
<display-name>Friends &amp; co</display-name>
<entry uri="sip:bob@example.com"><display-name>Bob</display-name>
</entry>
<entry uri="sip:carol@example.com"/>
<entry-ref ref="resource-lists/x"/>
<external anchor="http://h/y"/>
<list name="inner">
</list>
</list>
</resource-lists>
`
	if got := string(ls.Append(nil)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got, want := string(Entry{URI: `sip:a@b;x="<>"`}.Append(nil)), `<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:a@b;x=&quot;&lt;&gt;&quot;"/>`+"\n"; got != want {
		t.Errorf("entry %s, want %s", got, want)
	}
	if err := Validate(NewDocument()); err != nil {
		t.Errorf("NewDocument: %v", err)
	}
	if ls, err := Parse(NewDocument()); err != nil || len(ls.Lists) != 0 {
		t.Errorf("NewDocument: %+v %v", ls, err)
	}
}

// Names and display names come from users: whatever they hold must stay
// inside their attribute or element.
func TestAppendEscapes(t *testing.T) {
	evil := `"x" <&> ' ]]></display-name><entry uri="sip:injected@h"/>` + "\x07\t"
	l := List{Name: evil, DisplayName: evil, Entries: []Entry{{URI: "sip:a@b;p=<&>", DisplayName: evil}}}
	out := l.Append(nil)
	got, err := ParseList(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	clean := strings.TrimSpace(strings.Replace(evil, "\x07", "\uFFFD", 1))
	if got.Name != strings.Replace(evil, "\x07", "\uFFFD", 1) || got.DisplayName != clean || len(got.Entries) != 1 ||
		got.Entries[0] != (Entry{URI: "sip:a@b;p=<&>", DisplayName: clean}) {
		t.Errorf("values changed: %+v\n%s", got, out)
	}
}
