package reginfo

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
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
		out := Build(info.Version, info.Full, info.Registrations)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Build output rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(info, again) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", info, again)
		}
	})
}
