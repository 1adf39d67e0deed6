package rlmi

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

// The RLMI document of the example of RFC 4662, and a partial document
// with the optional attributes of an instance and extension content.
func TestParseExamples(t *testing.T) {
	cases := []struct {
		file string
		want List
	}{
		{"rfc4662-full.xml", List{
			URI: "sip:adam-friends@pres.vancouver.example.com", Version: 1, FullState: true,
			Names: []Name{{Lang: "en", Text: "Buddy List at COM"}, {Lang: "de", Text: "Liste der Freunde an COM"}},
			Resources: []Resource{
				{URI: "sip:bob@vancouver.example.com", Names: []Name{{Text: "Bob Smith"}},
					Instances: []Instance{{ID: "juwigmtboe", State: "active", CID: "bUZBsM@pres.vancouver.example.com"}}},
				{URI: "sip:dave@vancouver.example.com", Names: []Name{{Text: "Dave Jones"}},
					Instances: []Instance{{ID: "hqzsuxtfyq", State: "active", CID: "ZvSvkz@pres.vancouver.example.com"}}},
				{URI: "sip:ed@dallas.example.net", Names: []Name{{Text: "Ed at NET"}}},
				{URI: "sip:adam-friends@stockholm.example.org",
					Names: []Name{{Lang: "en", Text: "My Friends at ORG"}, {Lang: "de", Text: "Meine Freunde an ORG"}}},
			}}},
		{"partial.xml", List{
			URI: "sip:adam-friends@pres.vancouver.example.com", Version: 2, FullState: false,
			Resources: []Resource{{URI: "sip:ed@dallas.example.net", Instances: []Instance{
				{ID: "sdlkmeopdf", State: "pending"},
				{ID: "cmpqweitlp", State: "terminated", Reason: "rejected"},
				{ID: "zzz", State: "active", CID: "abc@pres.example.com"},
			}}}}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			got, err := Parse(readFile(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got\n%+v\nwant\n%+v", *got, c.want)
			}
			again, err := Parse(got.Append(nil))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Append round trip: %v\n%+v", err, again)
			}
		})
	}
}

func TestAppendExact(t *testing.T) {
	l := List{URI: "sip:friends@example.com", Version: 7, FullState: false,
		Names: []Name{{Lang: "en", Text: "Friends"}},
		Resources: []Resource{
			{URI: "sip:bob@example.com", Names: []Name{{Text: "Bob"}}, Instances: []Instance{
				{ID: "i1", State: "active", CID: "c1@example.com"},
				{ID: "i2", State: "terminated", Reason: "noresource"},
			}},
			{URI: "sip:carol@example.org"},
		}}
	want := `<?xml version="1.0" encoding="UTF-8"?>
<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:friends@example.com" version="7" fullState="false">
<name xml:lang="en">Friends</name>
<resource uri="sip:bob@example.com">
<name>Bob</name>
<instance id="i1" state="active" cid="c1@example.com"/>
<instance id="i2" state="terminated" reason="noresource"/>
</resource>
<resource uri="sip:carol@example.org">
</resource>
</list>
`
	prefix := []byte("kept:")
	got := l.Append(prefix)
	if string(got) != "kept:"+want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Names come from the display names of buddy lists, which users type:
// whatever they hold must stay inside their element.
func TestAppendEscapes(t *testing.T) {
	evil := `"Mallory" <&> ' ]]></name><resource uri="x">` + "\x1b\r\n\t"
	l := List{URI: `sip:a@b;x="&"`, Version: 1, FullState: true, Names: []Name{{Lang: `en"`, Text: evil}},
		Resources: []Resource{{URI: "sip:m@evil;p=<&>", Names: []Name{{Text: evil}},
			Instances: []Instance{{ID: `<id>`, State: "pending", Reason: `"r"`, CID: `c&d`}}}}}
	out := l.Append(nil)
	got, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, out)
	}
	clean := strings.TrimSpace(strings.Replace(evil, "\x1b", "\uFFFD", 1))
	if len(got.Resources) != 1 || got.Names[0].Text != clean || got.Names[0].Lang != `en"` || got.URI != `sip:a@b;x="&"` {
		t.Fatalf("values changed: %+v\n%s", got, out)
	}
	r := got.Resources[0]
	if r.URI != "sip:m@evil;p=<&>" || r.Names[0].Text != clean || r.Instances[0] != (Instance{ID: "<id>", State: "pending", Reason: `"r"`, CID: "c&d"}) {
		t.Errorf("values changed: %+v\n%s", r, out)
	}
}

// fullState is an xs:boolean, which also allows 1 and 0.
func TestParseBoolean(t *testing.T) {
	for in, want := range map[string]bool{"true": true, "1": true, " true ": true, "false": false, "0": false} {
		l, err := Parse([]byte(`<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:l@h" version="0" fullState="` + in + `"/>`))
		if err != nil {
			t.Fatalf("fullState=%q: %v", in, err)
		}
		if l.FullState != want {
			t.Errorf("fullState=%q read as %v", in, l.FullState)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const head = `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:l@h" version="1" fullState="true">`
	res := func(s string) string {
		return head + `<resource uri="sip:r@h">` + s + `</resource></list>`
	}
	cases := []struct{ name, in, want string }{
		{"empty", ``, "no root"},
		{"wrong namespace", `<list xmlns="urn:ietf:params:xml:ns:resource-lists" uri="a" version="1" fullState="true"/>`, "want <list> in urn:ietf:params:xml:ns:rlmi"},
		{"no uri", `<list xmlns="urn:ietf:params:xml:ns:rlmi" version="1" fullState="true"/>`, "no uri"},
		{"blank uri", `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri=" " version="1" fullState="true"/>`, "no uri"},
		{"no version", `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="a" fullState="true"/>`, "no version"},
		{"bad version", `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="a" version="-1" fullState="true"/>`, "not a 32-bit"},
		{"huge version", `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="a" version="4294967296" fullState="true"/>`, "not a 32-bit"},
		{"no fullState", `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="a" version="1"/>`, "no fullState"},
		{"bad fullState", `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="a" version="1" fullState="yes"/>`, `fullState "yes"`},
		{"resource without uri", head + `<resource/></list>`, "<resource> has no uri"},
		{"instance without id", res(`<instance state="active"/>`), "<instance> has no id"},
		{"bad state", res(`<instance id="1" state="waiting"/>`), `state "waiting"`},
		{"no state", res(`<instance id="1"/>`), `state ""`},
		{"too many instances", res(strings.Repeat(`<instance id="1" state="active"/>`, MaxInstances+1)), "more than 64 instances"},
		{"too many resource names", res(strings.Repeat(`<name>n</name>`, MaxNames+1)), "more than 16 names"},
		{"too many list names", head + strings.Repeat(`<name>n</name>`, MaxNames+1) + `</list>`, "more than 16 names"},
		{"too many resources", head + strings.Repeat(`<resource uri="r"/>`, MaxResources+1) + `</list>`, "more than 4096 resources"},
		{"DTD", `<!DOCTYPE list>` + head + `</list>`, "DTD"},
		{"too deep", res(strings.Repeat("<x>", MaxDepth) + strings.Repeat("</x>", MaxDepth)), "deeper"},
		{"truncated", head + `<resource uri="r">`, "malformed XML"},
		{"two roots", head + `</list>` + head + `</list>`, "more than one root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", l)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "rlmi: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(head + strings.Repeat(" ", MaxSize) + "</list>")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

// The limits are inclusive: a list of exactly MaxResources resources is a
// valid document.
func TestParseAtLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:l@h" version="1" fullState="true">`)
	for i := range MaxResources {
		fmt.Fprintf(&b, `<resource uri="sip:%d@h"/>`, i)
	}
	b.WriteString(`</list>`)
	l, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Resources) != MaxResources || l.Resources[MaxResources-1].URI != fmt.Sprintf("sip:%d@h", MaxResources-1) {
		t.Errorf("read %d resources", len(l.Resources))
	}
}
