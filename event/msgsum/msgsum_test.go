package msgsum

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The body of the brief's and RFC 3842 §6's kind: exact bytes.
func TestMarshal(t *testing.T) {
	cases := []struct {
		name string
		s    Summary
		want string
	}{
		{"voice", Summary{Waiting: true, Account: "sip:alice@example.com", Voice: Counts{New: 2, Old: 8, UrgentOld: 2}},
			"Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\nVoice-Message: 2/8 (0/2)\r\n"},
		{"empty mailbox", Summary{},
			"Messages-Waiting: no\r\nVoice-Message: 0/0 (0/0)\r\n"},
		{"other classes", Summary{Waiting: true, Fax: Counts{New: 1}, Text: Counts{Old: 3, UrgentOld: 1}},
			"Messages-Waiting: yes\r\nVoice-Message: 0/0 (0/0)\r\nFax-Message: 1/0 (0/0)\r\nText-Message: 0/3 (0/1)\r\n"},
		{"details", Summary{Waiting: true, Voice: Counts{New: 1}, Details: "To: <alice@example.com>\nSubject: hi\n"},
			"Messages-Waiting: yes\r\nVoice-Message: 1/0 (0/0)\r\n\r\nTo: <alice@example.com>\r\nSubject: hi\r\n"},
		{"account cannot inject lines", Summary{Account: "sip:a@b\r\nVoice-Message: 99/99"},
			"Messages-Waiting: no\r\nMessage-Account: sip:a@bVoice-Message: 99/99\r\nVoice-Message: 0/0 (0/0)\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(c.s.Marshal()); got != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// RFC 3842 §6 examples: a summary alone and one with message details.
func TestParseRFCExamples(t *testing.T) {
	in := "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 4/8 (1/2)\r\n"
	want := Summary{Waiting: true, Account: "sip:alice@vmail.example.com", Voice: Counts{4, 8, 1, 2}}
	if got, err := Parse([]byte(in)); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %+v, %v", got, err)
	}

	details := "To: <alice@example.com>\r\nFrom: <bob@example.com>\r\nSubject: carpool tonight?\r\n" +
		"Date: Thu, 03 Oct 2002 14:12:34 -0700\r\nMessage-ID: <13784434989@vmail.example.com>\r\n" +
		"Message-Context: voice-message\r\n\r\nTo: <alice@example.com>\r\nFrom: <carol@example.com>\r\n" +
		"Subject: Status meeting\r\nMessage-Context: voice-message\r\n"
	got, err := Parse([]byte(in + "\r\n" + details))
	want.Details = details
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Parse with details = %+v, %v", got, err)
	}
	if again, err := Parse(got.Marshal()); err != nil || !reflect.DeepEqual(again, got) {
		t.Errorf("round trip = %+v, %v", again, err)
	}
}

func TestParseLenient(t *testing.T) {
	cases := []struct {
		name, in string
		want     Summary
	}{
		{"LF and case", "messages-waiting:NO\nvoice-message: 0/1\n", Summary{Voice: Counts{Old: 1}}},
		{"spaces around separators", "Messages-Waiting : yes\r\nVoice-Message: 3 / 4 ( 1 / 0 )\r\n", Summary{Waiting: true, Voice: Counts{3, 4, 1, 0}}},
		{"all classes", "Messages-Waiting: yes\r\nFax-Message: 1/2\r\nPager-Message: 3/4\r\nMultimedia-Message: 5/6\r\nText-Message: 7/8\r\nNone: 9/10\r\n",
			Summary{Waiting: true, Fax: Counts{New: 1, Old: 2}, Pager: Counts{New: 3, Old: 4}, Multimedia: Counts{New: 5, Old: 6}, Text: Counts{New: 7, Old: 8}, None: Counts{New: 9, Old: 10}}},
		{"unknown header ignored", "Messages-Waiting: yes\r\nX-Vendor: 1\r\n", Summary{Waiting: true}},
		{"no final newline", "Messages-Waiting: yes", Summary{Waiting: true}},
		{"leading blank line", "\r\nMessages-Waiting: yes\r\n", Summary{Waiting: true}},
		{"max counts", "Messages-Waiting: yes\r\nVoice-Message: 4294967295/0\r\n", Summary{Waiting: true, Voice: Counts{New: 4294967295}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.in))
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("Parse = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "no Messages-Waiting"},
		{"no status", "Voice-Message: 1/2\r\n", "no Messages-Waiting"},
		{"bad status", "Messages-Waiting: maybe\r\n", `"maybe"`},
		{"not a header", "Messages-Waiting: yes\r\ngarbage\r\n", "not a header"},
		{"folded line", "Messages-Waiting: yes\r\n Voice-Message: 1/2\r\n", "not a header"},
		{"bad counts", "Messages-Waiting: yes\r\nVoice-Message: 1\r\n", "Voice-Message"},
		{"negative", "Messages-Waiting: yes\r\nVoice-Message: -1/2\r\n", "not new/old"},
		{"overflow", "Messages-Waiting: yes\r\nVoice-Message: 4294967296/0\r\n", "not new/old"},
		{"bad urgent", "Messages-Waiting: yes\r\nVoice-Message: 1/2 (3)\r\n", "urgent"},
		{"unclosed urgent", "Messages-Waiting: yes\r\nVoice-Message: 1/2 (3/4\r\n", "urgent"},
		{"trailing", "Messages-Waiting: yes\r\nVoice-Message: 1/2 x\r\n", "trailing"},
		{"twice", "Messages-Waiting: yes\r\nMessages-Waiting: no\r\n", "twice"},
		{"empty account", "Messages-Waiting: yes\r\nMessage-Account:\r\n", "empty Message-Account"},
		{"control char", "Messages-Waiting: yes\r\nMessage-Account: a\x00b\r\n", "control character"},
		{"not UTF-8", "Messages-Waiting: yes\r\nMessage-Account: sip:\xff@b\r\n", "not UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "msgsum: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte("Messages-Waiting: yes\r\n" + strings.Repeat("x", MaxSize))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}
