package sip

import (
	"os"
	"testing"
)

func benchMessage(b *testing.B, file string) []byte {
	b.Helper()
	data, err := os.ReadFile("testdata/bench/" + file)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkParseInvite parses a typical INVITE with an SDP body.
func BenchmarkParseInvite(b *testing.B) { benchParse(b, "invite.sip") }

// BenchmarkParseRegister parses a REGISTER with a SIP Outbound Contact.
func BenchmarkParseRegister(b *testing.B) { benchParse(b, "register.sip") }

func benchParse(b *testing.B, file string) {
	data := benchMessage(b, file)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteInvite writes a parsed INVITE into a reused buffer, as a
// transport does.
func BenchmarkWriteInvite(b *testing.B) { benchWrite(b, "invite.sip") }

// BenchmarkWriteRegister writes a parsed REGISTER into a reused buffer.
func BenchmarkWriteRegister(b *testing.B) { benchWrite(b, "register.sip") }

func benchWrite(b *testing.B, file string) {
	m, _ := Parse(benchMessage(b, file))
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendTo(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
