package dialoginfo

import (
	"testing"
	"time"
)

// BenchmarkBuild writes the document of a busy lamp with two calls, as
// done for every NOTIFY of the dialog package.
func BenchmarkBuild(b *testing.B) {
	dialogs := []Dialog{{
		ID: "a84b4c76e66710-1928301774", CallID: "a84b4c76e66710@192.0.2.4", LocalTag: "1928301774", RemoteTag: "456887766",
		Direction: "initiator", State: "confirmed", Duration: 274 * time.Second,
		Local:  Participant{Identity: "sip:alice@example.com", Display: "Alice", Target: "sip:alice@192.0.2.4:5060"},
		Remote: Participant{Identity: "sip:bob@example.org", Display: "Bob", Target: "sip:bob@198.51.100.7:5060"},
	}, {
		ID: "x1", CallID: "x1@192.0.2.4", LocalTag: "aa", Direction: "recipient", State: "early",
		Local:  Participant{Identity: "sip:alice@example.com"},
		Remote: Participant{Identity: "sip:carol@example.net", Display: "Carol"},
	}}
	b.ReportAllocs()
	for b.Loop() {
		Build("sip:alice@example.com", 42, true, dialogs)
	}
}

// BenchmarkParse reads a phone's PUBLISH body.
func BenchmarkParse(b *testing.B) {
	in := readFile(b, "rfc4235-confirmed.xml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
