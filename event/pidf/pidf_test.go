package pidf

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, b []byte) *Document {
	t.Helper()
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return d
}

// RFC 3863 §6 example (written with a prefix for the PIDF namespace, which
// the RFC allows and which exercises prefix handling).
func TestParseRFC3863Example(t *testing.T) {
	d := mustParse(t, readFile(t, "rfc3863.xml"))
	if d.Entity != "pres:someone@example.com" {
		t.Errorf("Entity = %q", d.Entity)
	}
	if len(d.Tuples) != 2 {
		t.Fatalf("got %d tuples, want 2", len(d.Tuples))
	}
	t0 := d.Tuples[0]
	want := Tuple{
		ID: "bs35r9", Basic: "open", Contact: "im:someone@mobilecarrier.net", Priority: "0.8",
		Notes: []Note{
			{Lang: "en", Text: "Don't Disturb Me!"},
			{Lang: "fr", Text: "Ne derangez pas, s'il vous plait"},
		},
		Timestamp: time.Date(2001, 10, 27, 16, 49, 29, 0, time.UTC),
	}
	t0.Raw = nil
	if !reflect.DeepEqual(t0, want) {
		t.Errorf("tuple 0 =\n%+v\nwant\n%+v", t0, want)
	}
	if d.Tuples[1].ID != "eg92n8" || d.Tuples[1].Priority != "1.0" || d.Tuples[1].Contact != "mailto:someone@example.com" {
		t.Errorf("tuple 1 = %+v", d.Tuples[1])
	}
	if got := d.Notes; len(got) != 1 || got[0].Text != "I'll be in Tokyo next week" || got[0].Lang != "en" {
		t.Errorf("Notes = %+v", got)
	}
	if !d.Open() {
		t.Error("Open() = false")
	}
	if d.Note() != "I'll be in Tokyo next week" {
		t.Errorf("Note() = %q", d.Note())
	}
	// The extension status elements and the prefixes they need survive.
	raw := string(d.Tuples[0].Raw)
	for _, s := range []string{`<impp:tuple`, `xmlns:impp="urn:ietf:params:xml:ns:pidf"`, `xmlns:im="urn:ietf:params:xml:ns:pidf:im"`, `<im:im>busy</im:im>`, `<myex:location>home</myex:location>`, `</impp:tuple>`} {
		if !strings.Contains(raw, s) {
			t.Errorf("Raw lacks %s:\n%s", s, raw)
		}
	}
	if strings.Contains(raw, `xmlns=""`) {
		t.Errorf("Raw undeclares a default namespace it does not use:\n%s", raw)
	}
}

// RFC 4480 §4 example: activities and notes of the person, the device kept.
func TestParseRFC4480Example(t *testing.T) {
	d := mustParse(t, readFile(t, "rfc4480.xml"))
	if got := d.Activities(); !reflect.DeepEqual(got, []string{"away"}) {
		t.Errorf("Activities() = %q, want [away] (rpid:note is not an activity)", got)
	}
	if d.Note() != "Scoring 120" {
		t.Errorf("Note() = %q", d.Note())
	}
	if len(d.Persons) != 1 || d.Persons[0].ID != "p1" {
		t.Fatalf("Persons = %+v", d.Persons)
	}
	if ts := d.Persons[0].Timestamp; !ts.Equal(time.Date(2005, 5, 30, 11, 9, 44, 0, time.UTC)) {
		t.Errorf("person timestamp = %v", ts)
	}
	if len(d.Extensions) != 1 || d.Extensions[0].Local != "device" || d.Extensions[0].Space != NSDataModel || d.Extensions[0].ID != "pc147" {
		t.Errorf("Extensions = %+v", d.Extensions)
	}
	// lt: is needed inside the person, so its Raw declares it; the standard
	// prefixes are left to the composed root.
	raw := string(d.Persons[0].Raw)
	if !strings.Contains(raw, `xmlns:lt="urn:ietf:params:xml:ns:location-type"`) || strings.Contains(raw, `xmlns:dm=`) {
		t.Errorf("person Raw declarations wrong:\n%s", raw)
	}
}

func TestActivitiesInStatus(t *testing.T) {
	d := mustParse(t, readFile(t, "status-activities.xml"))
	if got := d.Activities(); !reflect.DeepEqual(got, []string{"on-the-phone"}) {
		t.Errorf("Activities() = %q", got)
	}
}

// Composing a parsed document and parsing the result gives the same data:
// the raw copies are self-contained.
func TestComposeRoundTrip(t *testing.T) {
	for _, name := range []string{"rfc3863.xml", "rfc4480.xml", "baresip.xml", "status-activities.xml"} {
		t.Run(name, func(t *testing.T) {
			d := mustParse(t, readFile(t, name))
			out := Compose(d.Entity, d)
			d2 := mustParse(t, out)
			if !reflect.DeepEqual(strip(d), strip(d2)) {
				t.Errorf("round trip changed the document:\n%+v\n%+v\n%s", strip(d), strip(d2), out)
			}
			if again := Compose(d2.Entity, d2); !bytes.Equal(again, out) {
				t.Errorf("second composition differs:\n%s\n%s", out, again)
			}
		})
	}
}

// strip drops the raw copies, which legitimately differ in their start tag.
func strip(d *Document) *Document {
	c := *d
	c.Tuples = append([]Tuple(nil), d.Tuples...)
	for i := range c.Tuples {
		c.Tuples[i].Raw = nil
	}
	c.Persons = append([]Person(nil), d.Persons...)
	for i := range c.Persons {
		c.Persons[i].Raw = nil
	}
	c.Extensions = append([]Extension(nil), d.Extensions...)
	for i := range c.Extensions {
		c.Extensions[i].Raw = nil
	}
	return &c
}

// A child in no namespace under a prefixed PIDF root must not fall into
// the default PIDF namespace of the composed document.
func TestRawKeepsNoNamespace(t *testing.T) {
	in := `<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com">` +
		`<p:tuple id="a"><p:status><p:basic>closed</p:basic><plain/></p:status></p:tuple>` +
		`<ext id="e1">x</ext></p:presence>`
	d := mustParse(t, []byte(in))
	d2 := mustParse(t, Compose(d.Entity, d))
	if len(d2.Extensions) != 1 || d2.Extensions[0].Space != "" || d2.Extensions[0].Local != "ext" {
		t.Errorf("extension = %+v", d2.Extensions)
	}
	if d2.Tuples[0].Basic != "closed" {
		t.Errorf("basic = %q", d2.Tuples[0].Basic)
	}
}

func TestComposeDevices(t *testing.T) {
	phone := mustParse(t, []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
<tuple id="t1"><status><basic>open</basic></status><contact>sip:alice@phone</contact></tuple>
<note>shared</note><note>from phone</note>
<dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities></dm:person>
<dm:device id="d"><dm:deviceID>urn:uuid:1</dm:deviceID></dm:device>
</presence>`))
	laptop := mustParse(t, []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
<tuple id="t1"><status><basic>closed</basic></status><contact>sip:alice@laptop</contact></tuple>
<note>shared</note>
<dm:person id="p"><rpid:activities><rpid:away/></rpid:activities><dm:note>lunch</dm:note></dm:person>
<dm:device id="d"/>
</presence>`))
	out := Compose("sip:alice@example.com", phone, nil, laptop)
	d := mustParse(t, out)
	var ids, contacts []string
	for _, tu := range d.Tuples {
		ids = append(ids, tu.ID)
		contacts = append(contacts, tu.Contact)
	}
	if !reflect.DeepEqual(ids, []string{"t1", "t1-2"}) || !reflect.DeepEqual(contacts, []string{"sip:alice@phone", "sip:alice@laptop"}) {
		t.Errorf("tuples: ids %q contacts %q\n%s", ids, contacts, out)
	}
	if got := d.Activities(); !reflect.DeepEqual(got, []string{"away"}) {
		t.Errorf("Activities() = %q, want the last publication's", got)
	}
	if len(d.Persons) != 1 || d.Note() != "lunch" {
		t.Errorf("persons = %+v, note %q", d.Persons, d.Note())
	}
	var notes []string
	for _, n := range d.Notes {
		notes = append(notes, n.Text)
	}
	if !reflect.DeepEqual(notes, []string{"shared", "from phone"}) {
		t.Errorf("notes = %q", notes)
	}
	if len(d.Extensions) != 2 || d.Extensions[0].ID != "d" || d.Extensions[1].ID != "d-2" {
		t.Errorf("devices = %+v\n%s", d.Extensions, out)
	}
	// A person id equal to a tuple id would be a duplicate xs:ID.
	if d.Persons[0].ID != "p" {
		t.Errorf("person id = %q", d.Persons[0].ID)
	}
}

func TestComposeFromFieldsEscapes(t *testing.T) {
	nasty := `<&"'>]]>` + "\x01\ttab\r\nline"
	doc := &Document{
		Tuples: []Tuple{{Basic: "open", Contact: "sip:a@b;x=<&>", Priority: `0.5"`,
			Notes: []Note{{Lang: "en", Text: nasty}}, Timestamp: time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}},
		Persons: []Person{{Activities: []string{"on-the-phone", "gone <fishing>"}, Notes: []Note{{Text: nasty}}}},
		Notes:   []Note{{Text: nasty}},
	}
	out := Compose(`sip:"evil"<&>@example.com`, doc)
	d := mustParse(t, out)
	if d.Entity != `sip:"evil"<&>@example.com` {
		t.Errorf("Entity = %q", d.Entity)
	}
	// \x01 cannot be carried by XML 1.0; everything else comes back exactly.
	wantText := `<&"'>]]>` + "\uFFFD\ttab\r\nline"
	if d.Notes[0].Text != wantText || d.Persons[0].Notes[0].Text != wantText || d.Tuples[0].Notes[0].Text != wantText {
		t.Errorf("notes = %q / %q / %q", d.Notes[0].Text, d.Persons[0].Notes[0].Text, d.Tuples[0].Notes[0].Text)
	}
	tu := d.Tuples[0]
	if tu.ID != "t1" || tu.Contact != "sip:a@b;x=<&>" || tu.Priority != `0.5"` || !tu.Timestamp.Equal(doc.Tuples[0].Timestamp) {
		t.Errorf("tuple = %+v", tu)
	}
	if got := d.Activities(); !reflect.DeepEqual(got, []string{"on-the-phone", "gone <fishing>"}) {
		t.Errorf("Activities() = %q", got)
	}
	if !strings.Contains(string(out), "<rpid:on-the-phone/>") {
		t.Errorf("activity not written the way baresip matches it:\n%s", out)
	}
}

func TestClosed(t *testing.T) {
	out := Closed("sip:bob@example.com")
	d := mustParse(t, out)
	if d.Entity != "sip:bob@example.com" || len(d.Tuples) != 1 || d.Tuples[0].Basic != "closed" || d.Open() {
		t.Errorf("Closed document = %+v\n%s", d, out)
	}
	if !bytes.Contains(out, []byte("<basic>closed</basic>")) {
		t.Errorf("basic not unprefixed:\n%s", out)
	}
}

func TestParseErrors(t *testing.T) {
	const ok = `xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"`
	deep := `<presence ` + ok + `><tuple id="a"><status>` + strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40) + `</status></tuple></presence>`
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><presence ` + ok + `>&lol2;</presence>`
	cases := []struct {
		name, in, want string
	}{
		{"empty", ``, "no root"},
		{"not xml", `hello`, "text outside"},
		{"wrong root", `<presence-info ` + ok + `/>`, "root element is <presence-info>"},
		{"wrong namespace", `<presence xmlns="urn:ietf:params:xml:ns:pidf:im" entity="x"/>`, "want <presence> in urn:ietf:params:xml:ns:pidf"},
		{"no namespace", `<presence entity="x"/>`, "root element is <presence>"},
		{"no entity", `<presence xmlns="urn:ietf:params:xml:ns:pidf"/>`, "no entity"},
		{"tuple without id", `<presence ` + ok + `><tuple><status/></tuple></presence>`, "without id"},
		{"tuple without status", `<presence ` + ok + `><tuple id="a"><contact>x</contact></tuple></presence>`, `tuple "a" has no <status>`},
		{"two statuses", `<presence ` + ok + `><tuple id="a"><status/><status/></tuple></presence>`, "two <status>"},
		{"bad basic", `<presence ` + ok + `><tuple id="a"><status><basic>maybe</basic></status></tuple></presence>`, `<basic> is "maybe"`},
		{"duplicate id", `<presence ` + ok + `><tuple id="a"><status/></tuple><tuple id="a"><status/></tuple></presence>`, `id "a" used twice`},
		{"DTD", laughs, "DTD"},
		{"too deep", deep, "nested deeper than 32"},
		{"undeclared prefix", `<presence ` + ok + `><x:tuple/></presence>`, `undeclared prefix "x"`},
		{"undeclared attribute prefix", `<presence ` + ok + ` y:a="1"/>`, "undeclared prefix"},
		{"mismatched tag", `<presence ` + ok + `><tuple id="a"><status></tuple></status></presence>`, "closed by"},
		{"two roots", `<presence ` + ok + `/><presence ` + ok + `/>`, "more than one root"},
		{"text after root", `<presence ` + ok + `/>junk`, "text outside"},
		{"truncated", `<presence ` + ok + `><tuple id="a">`, "ends inside <tuple>"},
		{"duplicate attribute", `<presence ` + ok + ` entity="b"/>`, "attribute \"entity\" twice"},
		{"duplicate attribute via prefixes", `<presence ` + ok + ` xmlns:a="u" xmlns:b="u" a:x="1" b:x="2"/>`, "twice"},
		{"unknown entity", `<presence ` + ok + `>&nbsp;</presence>`, "malformed XML"},
		{"shift-jis", `<?xml version="1.0" encoding="Shift_JIS"?><presence ` + ok + `/>`, `unsupported encoding "Shift_JIS"`},
		{"invalid UTF-8", `<presence ` + ok + `><note>` + "\xff" + `</note></presence>`, "invalid UTF-8"},
		{"control in comment", `<presence ` + ok + `><!-- ` + "\x01" + ` --></presence>`, "control character 0x01"},
		{"late XML declaration", `<presence ` + ok + `><?xml version="1.0"?></presence>`, "not at the start"},
		{"rebinding xml", `<presence ` + ok + ` xmlns:xml="urn:x"/>`, "reserved prefix"},
		{"declaring xmlns", `<presence ` + ok + ` xmlns:xmlns="urn:x"/>`, "reserved prefix"},
		{"binding the xml namespace", `<presence ` + ok + ` xmlns:x="http://www.w3.org/XML/1998/namespace"/>`, "reserved prefix"},
		{"undeclare prefix", `<presence ` + ok + ` xmlns:a=""/>`, "empty namespace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", d)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "pidf: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	b := []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com">` + strings.Repeat(" ", MaxSize) + `</presence>`)
	if _, err := Parse(b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
	// Exactly at the limit is fine.
	b = append(b[:MaxSize-len("</presence>")], "</presence>"...)
	if _, err := Parse(b); err != nil {
		t.Errorf("document of MaxSize bytes: %v", err)
	}
}

// A document with no tuples is valid PIDF (RFC 3863 §4.1.1: zero or more).
func TestParseNoTuples(t *testing.T) {
	d := mustParse(t, []byte(`<?xml version="1.0"?><!-- c --><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"/>`))
	if len(d.Tuples) != 0 || d.Open() || d.Note() != "" || d.Activities() != nil {
		t.Errorf("document = %+v", d)
	}
}

func TestRenameSelfClosingRaw(t *testing.T) {
	in := []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:x" entity="s"><x:e id="a"/></presence>`)
	d := mustParse(t, in)
	out := Compose("s", d, d)
	d2 := mustParse(t, out)
	if len(d2.Extensions) != 2 || d2.Extensions[1].ID != "a-2" {
		t.Errorf("extensions = %+v\n%s", d2.Extensions, out)
	}
}

// Some desk phones publish latin-1; a UTF-8 byte order mark is harmless.
func TestParseEncodings(t *testing.T) {
	latin1 := "<?xml version='1.0' encoding='ISO-8859-1'?>\n<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:1000@example.com'>" +
		"<tuple id='t1'><status><basic>open</basic></status><note>Caf\xe9</note></tuple></presence>"
	d := mustParse(t, []byte(latin1))
	if d.Tuples[0].Notes[0].Text != "Café" || !strings.Contains(string(d.Tuples[0].Raw), "Café") {
		t.Errorf("latin-1 note = %q, raw %q", d.Tuples[0].Notes[0].Text, d.Tuples[0].Raw)
	}
	// The composed document is UTF-8 and says so.
	if d2 := mustParse(t, Compose(d.Entity, d)); d2.Tuples[0].Notes[0].Text != "Café" {
		t.Errorf("composed note = %q", d2.Tuples[0].Notes[0].Text)
	}
	bom := "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf8\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@b\"/>"
	mustParse(t, []byte(bom))
}

// Many devices with the same tuple id: ids stay unique past the point
// where the set of ids turns into a map.
func TestComposeManyIDs(t *testing.T) {
	d := mustParse(t, readFile(t, "baresip.xml"))
	docs := make([]*Document, 40)
	for i := range docs {
		docs[i] = d
	}
	out := Compose("sip:alice@example.com", docs...)
	c := mustParse(t, out) // Parse rejects duplicate ids
	if len(c.Tuples) != 40 || c.Tuples[39].ID != "t4109-40" || c.Persons[0].ID != "p4159" {
		t.Errorf("got %d tuples, last %q, person %q", len(c.Tuples), c.Tuples[39].ID, c.Persons[0].ID)
	}
}
