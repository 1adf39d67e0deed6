package sipgo

import (
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

// benchHlasParse parses data with hlas's sip.Parse, the entry point the
// transports call for every datagram or framed stream message.
func benchHlasParse(b *testing.B, name string) {
	data := loadMessage(b, name)
	if _, err := sip.Parse(data); err != nil {
		b.Fatalf("hlas cannot parse %s: %v", name, err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := sip.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHlasParseInvite(b *testing.B)   { benchHlasParse(b, "invite.sip") }
func BenchmarkHlasParseRegister(b *testing.B) { benchHlasParse(b, "register.sip") }
