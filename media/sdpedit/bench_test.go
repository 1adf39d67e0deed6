package sdpedit

import (
	"testing"

	"github.com/pion/sdp/v3"
)

// The typical offer: audio and video, session-level c=.
func BenchmarkParse(b *testing.B) {
	body := []byte(baresipOffer)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	d, err := Parse([]byte(baresipOffer))
	if err != nil {
		b.Fatal(err)
	}
	eps := []Endpoint{{relay4, 30000, 30001}, {relay4, 30002, 30003}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Rewrite(eps); err != nil {
			b.Fatal(err)
		}
	}
}

// A browser's offer converted for a phone, once per bridged call.
func BenchmarkConvert(b *testing.B) {
	d, err := Parse([]byte(chromeOffer))
	if err != nil {
		b.Fatal(err)
	}
	eps := []Endpoint{{relay4, 30000, 30001}}
	bs := []Bridge{{To: Plain}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Convert(eps, bs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPionRoundTrip is the alternative not taken, for comparison:
// pion/sdp Unmarshal and Marshal of the same offer.
func BenchmarkPionRoundTrip(b *testing.B) {
	body := []byte(baresipOffer)
	b.ReportAllocs()
	for b.Loop() {
		var s sdp.SessionDescription
		if err := s.Unmarshal(body); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}
