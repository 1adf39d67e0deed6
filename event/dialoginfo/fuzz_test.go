package dialoginfo

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// FuzzParse feeds arbitrary bodies to Parse; whatever it accepts, Build
// must write back so that Parse reads the same Info.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Parse(b)
		if err != nil {
			return
		}
		out := Build(info.Entity, info.Version, info.Full, info.Dialogs)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Build output rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(info, again) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", info, again)
		}
	})
}

// FuzzBuildText puts arbitrary strings in the free-text fields: the result
// must parse, and strings XML can carry must come back unchanged.
func FuzzBuildText(f *testing.F) {
	f.Add("sip:a@b", "id1", "call@h", "tag", `"Alice" <&>`, "sip:a@b", "sip:a@1.2.3.4")
	f.Add(" ", "\x00", "\r\n", "]]>", "\xff", "\t", "'")
	f.Fuzz(func(t *testing.T, entity, id, callID, tag, display, identity, target string) {
		d := Dialog{ID: id, CallID: callID, LocalTag: tag, RemoteTag: tag, Direction: "recipient", State: "early",
			Local:  Participant{Identity: identity, Display: display, Target: target},
			Remote: Participant{Identity: identity, Display: display, Target: target}}
		out := Build(entity, 1, true, []Dialog{d})
		info, err := Parse(out)
		// Characters XML cannot carry become U+FFFD, which is not blank.
		if id == "" || (safe(entity) && strings.TrimSpace(entity) == "") {
			if err == nil {
				t.Fatalf("accepted without entity or id:\n%s", out)
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(Build()) = %v\n%s", err, out)
		}
		// Each field on its own: two invalid halves can make one valid
		// character when joined.
		for _, s := range []string{entity, id, callID, tag, display, identity, target} {
			if !safe(s) {
				return
			}
		}
		got := info.Dialogs[0]
		want := d
		want.Local.Identity, want.Local.Target = strings.TrimSpace(identity), strings.TrimSpace(target)
		if want.Local.Identity == "" { // a display name without an identity is dropped
			want.Local.Display = ""
		}
		want.Remote = want.Local
		if info.Entity != strings.TrimSpace(entity) || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %q %+v\nwant %+v", info.Entity, got, want)
		}
	})
}

func safe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x80 && !xmltext.IsXMLChar(r)) {
			return false
		}
	}
	return true
}
