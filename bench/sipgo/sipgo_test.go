package sipgo

import (
	"testing"

	sipgo "github.com/emiago/sipgo/sip"
)

// benchSipgoParse parses data with one sipgo parser per benchmark, the way a
// sipgo transport reuses its parser for every datagram.
func benchSipgoParse(b *testing.B, name string) {
	data := loadMessage(b, name)
	p := sipgo.NewParser()
	if _, err := p.ParseSIP(data); err != nil {
		b.Fatalf("sipgo cannot parse %s: %v", name, err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.ParseSIP(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSipgoParseInvite(b *testing.B)   { benchSipgoParse(b, "invite.sip") }
func BenchmarkSipgoParseRegister(b *testing.B) { benchSipgoParse(b, "register.sip") }
