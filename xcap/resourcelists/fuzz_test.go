package resourcelists

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bodies to every parser of the package. What
// Parse or ParseList accepts, Append must write back so that it reads the
// same; Validate and ValidateServices never accept what their parser
// refuses, and Flatten stays within its limit without repeating a URI.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`<list xmlns="urn:ietf:params:xml:ns:resource-lists" name="x"><entry uri="sip:a@b"/><list><entry uri="sip:a@b"/></list></list>`))
	f.Add([]byte(`<list xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists"><rl:entry uri="sip:a@b"/></list>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ls, err := Parse(b); err == nil {
			out := ls.Append(nil)
			again, err := Parse(out)
			if err != nil {
				t.Fatalf("Append output rejected: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(ls, again) {
				t.Fatalf("round trip changed the document:\n%+v\n%+v", ls, again)
			}
			if (Validate(b) == nil) != (Validate(out) == nil) {
				t.Fatalf("Validate differs after the round trip: %v / %v", Validate(b), Validate(out))
			}
			for i := range ls.Lists {
				checkFlatten(t, &ls.Lists[i])
			}
		} else if Validate(b) == nil {
			t.Fatalf("Validate accepted what Parse refused: %v", err)
		}
		if l, err := ParseList(b); err == nil {
			out := l.Append(nil)
			again, err := ParseList(out)
			if err != nil {
				t.Fatalf("List.Append output rejected: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(l, again) {
				t.Fatalf("list round trip changed it:\n%+v\n%+v", l, again)
			}
			checkFlatten(t, l)
		}
		s, err := ParseServices(b)
		if verr := ValidateServices(b); verr == nil {
			if err != nil {
				t.Fatalf("ValidateServices accepted what ParseServices refused: %v", err)
			}
			for _, sv := range s.Services {
				if (sv.List == nil) == (sv.ResourceList == "") {
					t.Fatalf("valid service %q with list %v and resource-list %q", sv.URI, sv.List, sv.ResourceList)
				}
			}
		}
	})
}

func checkFlatten(t *testing.T, l *List) {
	for _, n := range []int{1, 3, MaxItems} {
		got := l.Flatten(n)
		if len(got) > n {
			t.Fatalf("Flatten(%d) returned %d entries", n, len(got))
		}
		seen := map[string]bool{}
		for _, e := range got {
			if seen[e.URI] {
				t.Fatalf("Flatten repeated %q", e.URI)
			}
			seen[e.URI] = true
		}
	}
}
