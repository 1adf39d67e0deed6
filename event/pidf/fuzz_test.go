package pidf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// FuzzParse feeds arbitrary bodies to Parse. Whatever it accepts must
// compose into a document that Parse accepts again with the same content,
// and composing that must give the same bytes (the raw copies are
// self-contained and stable).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" entity="e"><p:tuple id="a"><p:status/><x/></p:tuple><y id="b"/></p:presence>`))
	f.Add([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><!DOCTYPE x></presence>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if d != nil {
				t.Fatal("document returned with an error")
			}
			return
		}
		out := Compose(d.Entity, d)
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("composed document rejected: %v\ninput:\n%s\noutput:\n%s", err, b, out)
		}
		// A person without an id (invalid, but tolerated) gets one.
		s1, s2 := strip(d), strip(d2)
		for i := range s1.Persons {
			if s1.Persons[i].ID == "" && s2.Persons[i].ID != "" {
				s2.Persons[i].ID = ""
			}
		}
		if !reflect.DeepEqual(s1, s2) {
			t.Fatalf("content changed:\n%+v\n%+v\n%s", strip(d), strip(d2), out)
		}
		if again := Compose(d2.Entity, d2); !bytes.Equal(again, out) {
			t.Fatalf("composition not stable:\n%s\n%s", out, again)
		}
	})
}

// FuzzComposeText puts arbitrary strings in every text and attribute that
// Compose writes from fields: the output must always parse, and strings
// made only of XML characters must come back unchanged.
func FuzzComposeText(f *testing.F) {
	f.Add("sip:alice@example.com", `<&"'>`, "away", "sip:a@b", "0.8", "en")
	f.Add("\x00", "]]>\r\n", "gone fishing", "\xff", `"`, "\t")
	f.Fuzz(func(t *testing.T, entity, note, activity, contact, prio, lang string) {
		doc := &Document{
			Tuples:  []Tuple{{ID: "x", Basic: "open", Contact: contact, Priority: prio, Notes: []Note{{Lang: lang, Text: note}}}},
			Persons: []Person{{Activities: []string{activity}, Notes: []Note{{Lang: lang, Text: note}}}},
			Notes:   []Note{{Lang: lang, Text: note}},
		}
		out := Compose(entity, doc)
		d, err := Parse(out)
		// Characters XML cannot carry become U+FFFD, which is not blank.
		if xmlSafe(entity) && strings.TrimSpace(entity) == "" {
			if err == nil {
				t.Fatalf("accepted without entity:\n%s", out)
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(Compose()) = %v\n%s", err, out)
		}
		for _, s := range []string{entity, note, activity, contact, prio, lang} {
			if !xmlSafe(s) {
				return
			}
		}
		if d.Entity != strings.TrimSpace(entity) {
			t.Errorf("entity %q -> %q", entity, d.Entity)
		}
		want := Note{Lang: lang, Text: note}
		if d.Notes[0] != want || d.Tuples[0].Notes[0] != want || d.Persons[0].Notes[0] != want {
			t.Errorf("note %+v -> %+v %+v %+v", want, d.Notes[0], d.Tuples[0].Notes[0], d.Persons[0].Notes[0])
		}
		if tu := d.Tuples[0]; (contact != "" && tu.Contact != strings.TrimSpace(contact)) || (contact != "" && tu.Priority != prio) {
			t.Errorf("contact %q;%q -> %q;%q", contact, prio, tu.Contact, tu.Priority)
		}
		if a := strings.TrimSpace(activity); a != "" && a != "note" {
			if got := d.Activities(); len(got) != 1 || got[0] != a {
				t.Errorf("activity %q -> %q", activity, got)
			}
		}
	})
}

// xmlSafe reports whether s is made of characters XML 1.0 carries as they
// are (Compose replaces the others).
func xmlSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
		if r >= 0x80 && !xmltext.IsXMLChar(r) {
			return false
		}
	}
	return true
}
