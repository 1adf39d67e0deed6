package pidf

import "testing"

// BenchmarkCompose composes the publications of three devices, as done on
// every change of a presentity's state.
func BenchmarkCompose(b *testing.B) {
	docs := []*Document{
		mustParse(b, readFile(b, "baresip.xml")),
		mustParse(b, readFile(b, "status-activities.xml")),
		mustParse(b, readFile(b, "rfc4480.xml")),
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += len(Compose("sip:alice@example.com", docs...))
	}
	b.SetBytes(int64(n / max(b.N, 1)))
}

// BenchmarkComposeFields composes documents built from fields (no raw XML).
func BenchmarkComposeFields(b *testing.B) {
	doc := &Document{
		Tuples:  []Tuple{{ID: "t1", Basic: "open", Contact: "sip:alice@192.0.2.1"}, {ID: "t1", Basic: "closed"}},
		Persons: []Person{{ID: "p1", Activities: []string{"on-the-phone"}, Notes: []Note{{Text: "In a call"}}}},
	}
	b.ReportAllocs()
	for b.Loop() {
		Compose("sip:alice@example.com", doc)
	}
}

// BenchmarkParse parses a typical phone publication.
func BenchmarkParse(b *testing.B) {
	in := readFile(b, "baresip.xml")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
