package subscriber

import (
	"strings"
	"testing"
)

// RFC 6665 §8.2.3 (Subscription-State) as the subscriber reads it.
func TestParseSubState(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want subState
	}{
		{"active;expires=600", true, subState{"active", "", 600, -1}},
		{"Pending ; Expires = 30", true, subState{"pending", "", 30, -1}},
		{"terminated;reason=probation;retry-after=120", true, subState{"terminated", "probation", -1, 120}},
		{"terminated;reason=Deactivated", true, subState{"terminated", "deactivated", -1, -1}},
		{"terminated", true, subState{"terminated", "", -1, -1}},
		{"active;expires=99999999999999999999999", true, subState{"active", "", maxDelta, -1}},
		{`active;foo="a;b";expires=5`, true, subState{"active", "", 5, -1}},
		{"waiting", true, subState{"waiting", "", -1, -1}},
		{"", false, subState{}},
		{";expires=5", false, subState{}},
		{"active;expires=", false, subState{}},
		{"active;expires", false, subState{}},
		{"active;expires=-1", false, subState{}},
		{"active;expires=1h", false, subState{}},
		{"terminated;reason", false, subState{}},
		{"terminated;reason=a b", false, subState{}},
		{"terminated;retry-after=soon", false, subState{}},
		{"act ive", false, subState{}},
		{"active;expires=5" + strings.Repeat(" ", maxSubStateLen), false, subState{}},
	}
	for _, c := range cases {
		got, ok := parseSubState(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("parseSubState(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
		if !ok && (got.expires != -1 || got.retryAfter != -1 || got.state != "") {
			t.Errorf("parseSubState(%q) failed but returned %+v", c.in, got)
		}
	}
}

func TestLeadingDelta(t *testing.T) {
	for in, want := range map[string]int64{
		"120":                  120,
		" 18000;duration=3600": 18000,
		"5 (maintenance)":      5,
		"":                     -1,
		"soon":                 -1,
		"99999999999999999999": maxDelta,
	} {
		if got := leadingDelta(in); got != want {
			t.Errorf("leadingDelta(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestEventType(t *testing.T) {
	for in, want := range map[string]string{
		"presence":         "presence",
		" presence ;id=7 ": "presence",
		"presence.winfo":   "presence.winfo",
		"":                 "",
		"pres ence":        "",
		";id=1":            "",
	} {
		if got := eventType(in); got != want {
			t.Errorf("eventType(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseSubState(f *testing.F) {
	for _, s := range []string{
		"active;expires=600", "terminated;reason=probation;retry-after=120",
		`pending;x="q;\"";expires=0`, "terminated;reason=", ";;;", "active;expires=99999999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ss, ok := parseSubState(in)
		if !ok {
			if ss.state != "" || ss.expires != -1 || ss.retryAfter != -1 {
				t.Fatalf("failed parse returned %+v", ss)
			}
			return
		}
		if !isToken(ss.state) || ss.state != strings.ToLower(ss.state) {
			t.Fatalf("state %q", ss.state)
		}
		if ss.reason != "" && (!isToken(ss.reason) || ss.reason != strings.ToLower(ss.reason)) {
			t.Fatalf("reason %q", ss.reason)
		}
		if ss.expires < -1 || ss.expires > maxDelta || ss.retryAfter < -1 || ss.retryAfter > maxDelta {
			t.Fatalf("numbers %+v", ss)
		}
		if len(in) > maxSubStateLen {
			t.Fatal("over-long value accepted")
		}
		_ = leadingDelta(in)
		_ = eventType(in)
	})
}
