package reginfo

import (
	"errors"
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

// The examples of RFC 3680 §6, and a partial document with the optional
// attributes and elements of a contact.
func TestParseExamples(t *testing.T) {
	cases := []struct {
		file string
		want Info
	}{
		{"rfc3680-full.xml", Info{Version: 0, Full: true, Registrations: []Registration{{
			AOR: "sip:user@example.com", ID: "as9", State: "active", Contacts: []Contact{
				{ID: "76", State: "active", Event: "registered", DurationRegistered: 7322, Q: "0.8", URI: "sip:user@pc887.example.com"},
				{ID: "77", State: "terminated", Event: "expired", DurationRegistered: 3600, Q: "0.5", URI: "sip:user@university.edu"},
			}}}}},
		{"rfc3680-partial.xml", Info{Version: 1, Full: false, Registrations: []Registration{{
			AOR: "sip:user@example.com", ID: "as9", State: "active", Contacts: []Contact{
				{ID: "78", State: "active", Event: "created", Expires: 3600, CallID: "hjk8s8@192.0.2.1", CSeq: 2,
					URI: "sip:user@192.0.2.1:5062;transport=tcp", DisplayName: "Office phone"},
			}}, {AOR: "sip:other@example.com", ID: "b1", State: "terminated", Contacts: []Contact{}}}}},
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
			again, err := Parse(Build(got.Version, got.Full, got.Registrations))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Build round trip: %v\n%+v", err, again)
			}
		})
	}
}

func TestBuildExact(t *testing.T) {
	got := string(Build(5, true, []Registration{{AOR: "sip:alice@example.com", ID: "r1", State: "active", Contacts: []Contact{{
		ID: "c1", URI: "sip:alice@192.0.2.4:5060;ob", State: "active", Event: "refreshed", Expires: 3599, DurationRegistered: 120,
		Q: "1.0", CallID: "abc@h", CSeq: 7,
	}}}}))
	want := `<?xml version="1.0" encoding="UTF-8"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="5" state="full">
<registration aor="sip:alice@example.com" id="r1" state="active">
<contact id="c1" state="active" event="refreshed" duration-registered="120" expires="3599" q="1.0" callid="abc@h" cseq="7"><uri>sip:alice@192.0.2.4:5060;ob</uri></contact>
</registration>
</reginfo>
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestBuildEscapes(t *testing.T) {
	evil := `"x" <&> ]]>` + "\x07\r\n"
	regs := []Registration{{AOR: `sip:a@b;p="<&>"`, ID: evil, State: "init", Contacts: []Contact{{
		ID: evil, URI: "sip:c@d;x=<&>", DisplayName: evil, State: "terminated", Event: "unregistered", CallID: evil}}}}
	out := Build(1, false, regs)
	info, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, out)
	}
	clean := strings.Replace(evil, "\x07", "\uFFFD", 1)
	r := info.Registrations[0]
	c := r.Contacts[0]
	if r.AOR != `sip:a@b;p="<&>"` || r.ID != clean || c.ID != clean || c.DisplayName != clean || c.CallID != clean || c.URI != "sip:c@d;x=<&>" {
		t.Errorf("values changed: %+v\n%s", r, out)
	}
}

func TestParseErrors(t *testing.T) {
	const head = `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">`
	reg := func(s string) string {
		return head + `<registration aor="sip:a@b" id="r" state="active">` + s + `</registration></reginfo>`
	}
	cases := []struct{ name, in, want string }{
		{"empty", ``, "no root"},
		{"wrong root", `<reginfo/>`, "want <reginfo> in urn:ietf:params:xml:ns:reginfo"},
		{"no version", `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>`, "no version"},
		{"bad version", `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="x" state="full"/>`, "not a 32-bit"},
		{"bad state", `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state=""/>`, `state ""`},
		{"no aor", head + `<registration id="r" state="active"/></reginfo>`, "without aor"},
		{"no id", head + `<registration aor="sip:a@b" state="active"/></reginfo>`, "without id"},
		{"bad reg state", head + `<registration aor="sip:a@b" id="r" state="on"/></reginfo>`, `state "on"`},
		{"contact without id", reg(`<contact state="active" event="created"><uri>sip:x</uri></contact>`), "without id"},
		{"bad contact state", reg(`<contact id="1" state="init" event="created"><uri>sip:x</uri></contact>`), `state "init"`},
		{"bad event", reg(`<contact id="1" state="active" event="born"><uri>sip:x</uri></contact>`), `event "born"`},
		{"no uri", reg(`<contact id="1" state="active" event="created"/>`), "no <uri>"},
		{"bad expires", reg(`<contact id="1" state="active" event="created" expires="-1"><uri>sip:x</uri></contact>`), "expires"},
		{"bad cseq", reg(`<contact id="1" state="active" event="created" cseq="99999999999"><uri>sip:x</uri></contact>`), "cseq"},
		{"bad q", reg(`<contact id="1" state="active" event="created" q="1.5"><uri>sip:x</uri></contact>`), "q-value"},
		{"NaN q", reg(`<contact id="1" state="active" event="created" q="NaN"><uri>sip:x</uri></contact>`), "q-value"},
		{"DTD", `<!DOCTYPE r>` + head + `</reginfo>`, "DTD"},
		{"too deep", reg(strings.Repeat("<x>", 33) + strings.Repeat("</x>", 33)), "deeper"},
		{"truncated", head, "malformed XML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", info)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "reginfo: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(head + strings.Repeat(" ", MaxSize) + "</reginfo>")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

func TestIsQValue(t *testing.T) {
	for q, want := range map[string]bool{"0": true, "1": true, "0.5": true, "0.123": true, "1.000": true, "1.": true, "0.": true,
		"1.001": false, "0.1234": false, "2": false, "": false, ".5": false, "0,5": false, "01": false} {
		if got := isQValue(q); got != want {
			t.Errorf("isQValue(%q) = %v", q, got)
		}
	}
}
