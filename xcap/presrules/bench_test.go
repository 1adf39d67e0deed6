package presrules

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse reads a typical client document: a default rule and
// block and allow lists.
func BenchmarkParse(b *testing.B) {
	in := readFile(b, "oma-whitelist.xml")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseWorstCase combines the costliest document the limits
// allow: every exception its own <many>, each excepted user named again,
// so that every address is checked against every wildcard.
func BenchmarkParseWorstCase(b *testing.B) {
	n := MaxIdentities / 3
	var many, ones strings.Builder
	for i := range n {
		fmt.Fprintf(&many, `<many><except id="sip:u%d@h"/></many>`, i)
		fmt.Fprintf(&ones, `<one id="sip:u%d@h"/>`, i)
	}
	in := []byte(doc(rule("a", many.String(), "allow"), rule("b", ones.String(), "block")))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		rs, err := Parse(in)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) != n+1 {
			b.Fatalf("%d rules", len(rs))
		}
	}
}

// BenchmarkMarshal writes the document of a user with a hundred allowed
// buddies, a blocked domain and a default.
func BenchmarkMarshal(b *testing.B) {
	rs := []Rule{{"*", "confirm"}, {"*@spam.example", "block"}}
	for i := range 100 {
		rs = append(rs, Rule{fmt.Sprintf("buddy%d@example.com", i), "allow"})
	}
	b.ReportAllocs()
	for b.Loop() {
		Marshal(rs)
	}
}
