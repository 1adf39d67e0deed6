package presrules

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bodies to Parse. Whatever it accepts decides
// every watcher the document names as RFC 4745 does, and Marshal writes
// it back so that Parse reads the same rules.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(doc(rule("a", `<many><except domain="h"/><except id="sip:b@x"/></many>`, "allow"), rule("b", `<many domain="h"/><one id="sip:b@x"/>`, "block"))))
	f.Add(Marshal([]Rule{{"*", "confirm"}, {"*@h", "block"}, {"a@h", "allow"}, {"b@h", "block"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := Parse(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if rank(r.Action) < 0 || !validWatcher(r.Watcher) {
				t.Fatalf("Parse returned %+v", r)
			}
		}
		checkSemantics(t, b, rs)
		out := Marshal(rs)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Marshal output rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(rs, again) {
			t.Fatalf("round trip changed the rules:\n%v\n%v\n%s", rs, again, out)
		}
	})
}
