package msgsum

import (
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bodies to Parse; whatever it accepts must
// survive Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte("Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 4/8 (1/2)\r\n"))
	f.Add([]byte("Messages-Waiting: no\nFax-Message: 0/1\n\nTo: <a@b>\n\n\nSubject: x\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		out := s.Marshal()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Marshal output rejected: %v\n%q", err, out)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip changed the summary:\n%+v\n%+v\n%q", s, again, out)
		}
	})
}

// FuzzMarshal checks that no account or details text can make Marshal's
// output unreadable or change the counts.
func FuzzMarshal(f *testing.F) {
	f.Add(true, "sip:a@b", uint32(1), uint32(2), "To: <x>\r\n")
	f.Add(false, "\r\nVoice-Message: 9/9", uint32(0), uint32(0), "\n\n")
	f.Fuzz(func(t *testing.T, waiting bool, account string, n, o uint32, details string) {
		s := Summary{Waiting: waiting, Account: account, Voice: Counts{New: n, Old: o}, Details: details}
		got, err := Parse(s.Marshal())
		if err != nil {
			t.Fatalf("Marshal output rejected: %v\n%q", err, s.Marshal())
		}
		if got.Waiting != waiting || got.Voice != s.Voice || !got.Fax.IsZero() {
			t.Fatalf("summary changed: %+v -> %+v", s, got)
		}
	})
}
