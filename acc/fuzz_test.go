package acc

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/sip"
)

// The header fields accounting reads from the wire: Reason (RFC 3326) on
// BYEs and final responses, Session-Expires (RFC 4028) on 2xx. Whatever
// a peer sends, the record gets a value the store can hold (a Q.850 cause
// is 1-127: the column is a 32-bit INTEGER on PostgreSQL) and the session
// timer a sane interval.

// FuzzQ850 feeds raw Reason header values.
func FuzzQ850(f *testing.F) {
	for _, s := range []string{
		`Q.850;cause=16;text="Terminated"`,
		`SIP;cause=200;text="Call completed elsewhere", Q.850;cause=26`,
		`q.850 ; cause = 17 ; text = "User busy"`,
		`Q.850;cause=99999999999`,
		`Q.850;cause=-1;text="x"`,
		`Q.850;cause=16;text="a;b, c \"d\""`,
		`Q.850;cause=+16`,
		`Q.850;text="no cause"`,
		`Q.850`,
		`Q.850;cause=0`,
		`Q.850;cause=128`,
		"Q.850;cause=16;text=\"\xff\xfe\"",
		`,,,;;;==""`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var h sip.Header
		h.Add("Reason", v)
		cause, text := Q850(&h)
		if cause < 0 || cause > 127 {
			t.Fatalf("Q850(%q) = cause %d, outside 1-127", v, cause)
		}
		if cause == 0 && text != "" {
			t.Fatalf("Q850(%q) = text %q without a cause", v, text)
		}
	})
}

// FuzzQ850Text: a cause and text written as RFC 3326 says (text a
// quoted-string, RFC 3261 §25.1) read back as they were.
func FuzzQ850Text(f *testing.F) {
	f.Add(16, "Normal call clearing")
	f.Add(17, `busy; "really", \ yes`)
	f.Add(31, "")
	f.Add(127, "Ünïcödé")
	f.Fuzz(func(t *testing.T, cause int, text string) {
		if cause < 1 || cause > 127 || !utf8.ValidString(text) || strings.ContainsAny(text, "\x00\r\n\x7f") {
			return
		}
		quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(text)
		var h sip.Header
		h.Add("Reason", "Q.850;cause="+strconv.Itoa(cause)+`;text="`+quoted+`"`)
		gotCause, gotText := Q850(&h)
		if gotCause != cause || gotText != text {
			t.Fatalf("Reason: %s\nread cause %d text %q, want %d %q", h.Get("Reason"), gotCause, gotText, cause, text)
		}
	})
}

// FuzzSessionExpires feeds Session-Expires values: the interval is never
// negative, and a plain number of seconds is that many seconds.
func FuzzSessionExpires(f *testing.F) {
	for _, s := range []string{"1800", "1800;refresher=uac", " 90 ; refresher=uas", "0", "-5", "x",
		"9999999999999", "9223372036854775807", "2147483648", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		res := &sip.Response{StatusCode: 200}
		res.Add("Session-Expires", v)
		d := sessionExpires(res)
		if d < 0 {
			t.Fatalf("Session-Expires: %s gives %v", v, d)
		}
		num, _, _ := strings.Cut(v, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err == nil && n > 0 && n <= maxSessionExpires && strings.TrimSpace(num) == strconv.FormatInt(n, 10) &&
			strings.TrimSpace(res.Get("Session-Expires")) == strings.TrimSpace(v) && d != time.Duration(n)*time.Second {
			t.Fatalf("Session-Expires: %s gives %v, want %d s", v, d, n)
		}
		if d > maxSessionExpires*time.Second {
			t.Fatalf("Session-Expires: %s gives %v, beyond the %d s ceiling", v, d, maxSessionExpires)
		}
	})
}

// FuzzParseWhen feeds --since/--until values: a value either fails or
// gives the time it says, one the store's filter can hold (a zero time
// would mean "no bound" and silently drop the filter).
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"", "2025-01-02", "2025-01-02T15:04:05Z", "2025-01-02T15:04:05+01:00", "1h", "30m", "0s",
		"-1h", "1h30m", "2562047h", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0001-01-01", "1969-12-31",
		"2025-02-30", "yesterday", "1e3h", ".5h"} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseWhen(s, now)
		if err != nil {
			if s == "" {
				t.Fatalf("empty value: %v", err)
			}
			return
		}
		if s == "" {
			if !got.IsZero() {
				t.Fatalf("empty value gives %v", got)
			}
			return
		}
		if got.IsZero() || got.Before(time.Unix(0, 0)) {
			t.Fatalf("%q gives %v: no bound the store can hold", s, got)
		}
		epoch := time.Unix(0, 0)
		if d, err := time.ParseDuration(s); err == nil {
			if want := now.Add(-d); !got.Equal(want) && !(want.Before(epoch) && got.Equal(epoch)) {
				t.Fatalf("%q gives %v, want %v", s, got, want)
			}
		}
		if want, err := time.Parse(time.RFC3339, s); err == nil && !got.Equal(want) && !(want.Before(epoch) && got.Equal(epoch)) {
			t.Fatalf("%q gives %v, want %v", s, got, want)
		}
	})
}
