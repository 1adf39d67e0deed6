package dialoginfo

import (
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

// The examples of RFC 4235 §5 (trying, confirmed with participants) and
// terminated dialogs with their events.
func TestParseRFCExamples(t *testing.T) {
	cases := []struct {
		file string
		want Info
	}{
		{"rfc4235-trying.xml", Info{Entity: "sip:alice@example.com", Version: 0, Full: true, Dialogs: []Dialog{{
			ID: "as7d900as8", CallID: "a84b4c76e66710", LocalTag: "1928301774", Direction: "initiator", State: "trying",
		}}}},
		{"rfc4235-confirmed.xml", Info{Entity: "sip:alice@example.com", Version: 1, Full: true, Dialogs: []Dialog{{
			ID: "as7d900as8", CallID: "a84b4c76e66710", LocalTag: "1928301774", RemoteTag: "456887766",
			Direction: "initiator", State: "confirmed", Duration: 274 * time.Second,
			Local:  Participant{Identity: "sip:alice@example.com", Display: "Alice", Target: "sip:alice@pc33.example.com"},
			Remote: Participant{Identity: "sip:bob@example.org", Display: "Bob", Target: "sip:bobster@phone21.example.org"},
		}}}},
		{"rfc4235-partial.xml", Info{Entity: "sip:alice@example.com", Version: 2, Full: false, Dialogs: []Dialog{
			{ID: "as7d900as8", State: "terminated", Event: "rejected", Code: 486},
			{ID: "zxcvbnm3", CallID: "7426b9e3", LocalTag: "bd9z", RemoteTag: "7ccd", Direction: "recipient", State: "terminated", Event: "replaced"},
		}}},
		{"idle.xml", Info{Entity: "sip:201@pbx.example.com", Version: 7, Full: true, Dialogs: []Dialog{}}},
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
			// What Build writes from it reads back the same.
			again, err := Parse(Build(got.Entity, got.Version, got.Full, got.Dialogs))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Build round trip: %v\n%+v", err, again)
			}
		})
	}
}

// The exact bytes of a busy lamp document: what phones parse.
func TestBuildExact(t *testing.T) {
	got := string(Build("sip:201@example.com", 3, true, []Dialog{{
		ID: "d1", CallID: "c1@host", LocalTag: "lt", RemoteTag: "rt", Direction: "recipient", State: "early",
		Local:  Participant{Identity: "sip:201@example.com", Target: "sip:201@192.0.2.5:5060"},
		Remote: Participant{Identity: "sip:202@example.com", Display: "Bob"},
	}, {
		ID: "d2", State: "terminated", Event: "rejected", Code: 486, Duration: 1500 * time.Millisecond,
	}}))
	want := `<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:201@example.com">
<dialog id="d1" call-id="c1@host" local-tag="lt" remote-tag="rt" direction="recipient"><state>early</state><local><identity>sip:201@example.com</identity><target uri="sip:201@192.0.2.5:5060"/></local><remote><identity display="Bob">sip:202@example.com</identity></remote></dialog>
<dialog id="d2"><state event="rejected" code="486">terminated</state><duration>1</duration></dialog>
</dialog-info>
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if p := string(Build("sip:a@b", 0, false, nil)); !strings.Contains(p, `version="0" state="partial"`) || !strings.HasSuffix(p, "\">\n</dialog-info>\n") {
		t.Errorf("partial empty document:\n%s", p)
	}
}

// A display name or URI with markup characters must not break the XML.
func TestBuildEscapes(t *testing.T) {
	evil := `"Evil" <&> ]]>` + "\x00\r\n\t'"
	d := Dialog{ID: `id"<&`, CallID: evil, LocalTag: evil, RemoteTag: evil, Direction: "initiator", State: "confirmed",
		Local:  Participant{Identity: "sip:a@b;x=<&>", Display: evil, Target: `sip:t@h;p="&"`},
		Remote: Participant{Identity: "sip:c@d", Display: evil}}
	out := Build(`sip:"x"&<y>@z`, 9, true, []Dialog{d})
	info, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, out)
	}
	clean := strings.Replace(evil, "\x00", "\uFFFD", 1)
	got := info.Dialogs[0]
	if info.Entity != `sip:"x"&<y>@z` || got.ID != `id"<&` || got.CallID != clean || got.LocalTag != clean ||
		got.Local.Display != clean || got.Remote.Display != clean || got.Local.Identity != "sip:a@b;x=<&>" || got.Local.Target != `sip:t@h;p="&"` {
		t.Errorf("values changed:\n%+v\n%s", info, out)
	}
}

func TestParseErrors(t *testing.T) {
	const head = `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:a@b">`
	dlg := func(s string) string { return head + s + `</dialog-info>` }
	cases := []struct{ name, in, want string }{
		{"empty", ``, "no root"},
		{"garbage", `{"json":1}`, "text outside"},
		{"wrong root", `<presence xmlns="urn:ietf:params:xml:ns:pidf"/>`, "root element is <presence>"},
		{"no namespace", `<dialog-info version="1" state="full" entity="x"/>`, "want <dialog-info> in urn:ietf:params:xml:ns:dialog-info"},
		{"no version", `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" state="full" entity="x"/>`, "no version"},
		{"bad version", `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="4294967296" state="full" entity="x"/>`, "not a 32-bit"},
		{"negative version", `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="-1" state="full" entity="x"/>`, "not a 32-bit"},
		{"bad state", `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="some" entity="x"/>`, `state "some"`},
		{"no entity", `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full"/>`, "no entity"},
		{"dialog without id", dlg(`<dialog><state>early</state></dialog>`), "without id"},
		{"dialog without state", dlg(`<dialog id="a"/>`), "0 <state>"},
		{"two states", dlg(`<dialog id="a"><state>early</state><state>confirmed</state></dialog>`), "2 <state>"},
		{"bad dialog state", dlg(`<dialog id="a"><state>ringing</state></dialog>`), `state "ringing"`},
		{"bad event", dlg(`<dialog id="a"><state event="hangup">terminated</state></dialog>`), `event "hangup"`},
		{"bad code", dlg(`<dialog id="a"><state code="99">terminated</state></dialog>`), `code "99"`},
		{"bad direction", dlg(`<dialog id="a" direction="up"><state>early</state></dialog>`), `direction "up"`},
		{"bad duration", dlg(`<dialog id="a"><state>early</state><duration>-3</duration></dialog>`), `duration "-3"`},
		{"DTD", `<!DOCTYPE d [<!ENTITY a "aaaa">]>` + dlg(``), "DTD"},
		{"too deep", dlg(`<dialog id="a"><state>early</state>` + strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40) + `</dialog>`), "deeper than 32"},
		{"two roots", dlg(``) + dlg(``), "more than one root"},
		{"trailing text", dlg(``) + "x", "text outside"},
		{"truncated", head + `<dialog id="a">`, "malformed XML"},
		{"mismatched", head + `<dialog id="a"></state></dialog-info>`, "malformed XML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", info)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "dialoginfo: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	b := []byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:a@b">` +
		strings.Repeat(" ", MaxSize) + `</dialog-info>`)
	if _, err := Parse(b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
}

func TestParseLatin1(t *testing.T) {
	in := "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\" entity=\"sip:a@b\">" +
		"<dialog id=\"x\"><state>confirmed</state><remote><identity display=\"Ren\xe9\">sip:r@b</identity></remote></dialog></dialog-info>"
	info, err := Parse([]byte(in))
	if err != nil || info.Dialogs[0].Remote.Display != "René" {
		t.Errorf("Parse = %+v, %v", info, err)
	}
	if _, err := Parse([]byte(`<?xml version="1.0" encoding="UTF-16"?><dialog-info/>`)); err == nil || !strings.Contains(err.Error(), "unsupported encoding") {
		t.Errorf("UTF-16 declared: %v", err)
	}
}
