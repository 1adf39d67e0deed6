package resourcelists

import (
	"reflect"
	"strings"
	"testing"
)

const rfcResourceList = "http://xcap.example.com/resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22l1%22%5d"

// The rls-services example of RFC 4826 §4.3: one service backed by a
// buddy list, one by an inline list.
func TestParseServicesExample(t *testing.T) {
	in := readFile(t, "rfc4826-rls-services.xml")
	got, err := ParseServices(in)
	if err != nil {
		t.Fatal(err)
	}
	want := Services{Services: []Service{
		{URI: "sip:mybuddies@example.com", ResourceList: rfcResourceList, Packages: []string{"presence"}},
		{URI: "sip:marketing@example.com", List: &List{Name: "marketing", Entries: []Entry{{URI: "sip:joe@example.com"}, {URI: "sip:sudhir@example.com"}}},
			Packages: []string{"presence"}},
	}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", *got, want)
	}
	if err := ValidateServices(in); err != nil {
		t.Errorf("ValidateServices: %v", err)
	}
}

// A document built from NewServices and AppendService, as the command
// line tool does through XCAP, is valid and reads back.
func TestServicesBuilders(t *testing.T) {
	doc := string(NewServices())
	if err := ValidateServices([]byte(doc)); err != nil {
		t.Fatalf("NewServices: %v", err)
	}
	var elems []byte
	elems = AppendService(elems, "sip:friends@example.com", rfcResourceList, []string{"presence", "dialog"})
	elems = AppendService(elems, `sip:team@example.com;x="&"`, "", nil)
	full := strings.Replace(doc, "</rls-services>", string(elems)+"</rls-services>", 1)
	if err := ValidateServices([]byte(full)); err != nil {
		t.Fatalf("%v\n%s", err, full)
	}
	got, err := ParseServices([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	want := []Service{
		{URI: "sip:friends@example.com", ResourceList: rfcResourceList, Packages: []string{"presence", "dialog"}},
		{URI: `sip:team@example.com;x="&"`, List: &List{}},
	}
	if !reflect.DeepEqual(got.Services, want) {
		t.Errorf("got %+v\nwant %+v", got.Services, want)
	}
	// The element alone declares its namespace, so that an XCAP server
	// can check it before splicing it in.
	if !strings.HasPrefix(string(elems), `<service xmlns="urn:ietf:params:xml:ns:rls-services" uri="sip:friends@example.com">`) {
		t.Errorf("element:\n%s", elems)
	}
}

func TestValidateServices(t *testing.T) {
	doc := func(s string) string {
		return `<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">` + s + `</rls-services>`
	}
	const rl = `<resource-list>http://xcap.example.com/resource-lists/users/sip:a@h/index/~~/resource-lists/list%5b@name=%22x%22%5d</resource-list>`
	cases := []struct{ name, in, want string }{
		{"duplicate service", doc(`<service uri="sip:l@h">` + rl + `</service><service uri=" sip:l@h ">` + rl + `</service>`), `service "sip:l@h" appears twice`},
		{"neither", doc(`<service uri="sip:l@h"><packages><package>presence</package></packages></service>`), "neither <resource-list> nor <list>"},
		{"both", doc(`<service uri="sip:l@h">` + rl + `<list/></service>`), "want exactly one <resource-list> or <list>, found 2"},
		{"two resource-lists", doc(`<service uri="sip:l@h">` + rl + rl + `</service>`), "found 2"},
		{"two lists", doc(`<service uri="sip:l@h"><list/><list/></service>`), "found 2"},
		{"relative resource-list", doc(`<service uri="sip:l@h"><resource-list>resource-lists/users/x</resource-list></service>`), "not an absolute HTTP URI"},
		{"empty resource-list", doc(`<service uri="sip:l@h"><resource-list/></service>`), `resource-list "" is not`},
		{"inline duplicate entry", doc(`<service uri="sip:l@h"><list name="m"><rl:entry uri="sip:a@h"/><rl:entry uri="sip:a@h"/></list></service>`), `service "sip:l@h": list "m": entry "sip:a@h" appears twice`},
		{"inline duplicate sub-list", doc(`<service uri="sip:l@h"><list><rl:list name="x"/><rl:list name="x"/></list></service>`), `two lists named "x"`},
		{"empty package", doc(`<service uri="sip:l@h">` + rl + `<packages><package> </package></packages></service>`), "empty <package>"},
		{"two packages elements", doc(`<service uri="sip:l@h">` + rl + `<packages/><packages/></service>`), "2 <packages>"},
		{"no uri", doc(`<service>` + rl + `</service>`), "<service> without uri"},
		{"entries in wrong namespace", doc(`<service uri="sip:l@h"><list><rl:entry/></list></service>`), "<entry> without uri"},
		{"wrong root", `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>`, "want <rls-services>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateServices([]byte(c.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "resourcelists: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestParseServicesLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<rls-services xmlns="urn:ietf:params:xml:ns:rls-services">`)
	for range MaxItems + 1 {
		b.WriteString(`<service uri="s"/>`)
	}
	b.WriteString(`</rls-services>`)
	if _, err := ParseServices([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than 10000") {
		t.Errorf("too many services: %v", err)
	}
}
