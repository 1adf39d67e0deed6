package sip

import (
	"slices"
	"testing"
)

func TestCanonicalName(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"RFC3261 7.3.3 compact v", "v", "Via"},
		{"RFC3261 7.3.3 compact upper-case V", "V", "Via"},
		{"RFC3261 7.3.1 lower case", "call-id", "Call-ID"},
		{"RFC3261 7.3.1 upper case", "CALL-ID", "Call-ID"},
		{"RFC3261 20.16 CSeq", "cseq", "CSeq"},
		{"RFC3261 20.44 WWW-Authenticate", "www-authenticate", "WWW-Authenticate"},
		{"RFC3261 20.24 MIME-Version", "mime-version", "MIME-Version"},
		{"RFC3262 7.2 RAck", "rack", "RAck"},
		{"RFC3903 11.3.1 SIP-ETag", "sip-etag", "SIP-ETag"},
		{"RFC3261 7.3 unknown names are unchanged", "X-Custom-Header", "X-Custom-Header"},
		{"RFC3261 7.3.3 unknown compact letter is unchanged", "z", "z"},
		{"RFC3261 7.3.3 n (Identity-Info) is deprecated and unknown", "n", "n"},
		{"RFC3261 25.1 empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CanonicalName(tt.in); got != tt.want {
				t.Errorf("CanonicalName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestHeaderNameTable checks the table itself: every canonical name and
// compact letter is unique and maps back to its row.
func TestHeaderNameTable(t *testing.T) {
	seen := map[string]bool{}
	compact := map[byte]string{}
	for _, h := range headerNames {
		if seen[h.name] {
			t.Errorf("%s listed twice", h.name)
		}
		seen[h.name] = true
		if got := CanonicalName(h.name); got != h.name {
			t.Errorf("CanonicalName(%q) = %q", h.name, got)
		}
		if h.compact != 0 {
			if prev, ok := compact[h.compact]; ok {
				t.Errorf("compact %c used by %s and %s", h.compact, prev, h.name)
			}
			compact[h.compact] = h.name
			if h.compact < 'a' || h.compact > 'z' {
				t.Errorf("compact form of %s is %q, want a lower-case letter", h.name, h.compact)
			}
		}
	}
	if len(compact) != 19 {
		t.Errorf("%d compact forms, want the 19 of the IANA registry still in use", len(compact))
	}
}

func TestHeaderAddGetSetDel(t *testing.T) {
	h := Header{MaxForwards: -1}
	h.Add("Subject", "first")
	h.Add("s", "second")
	h.Add("X-Custom", "1")
	h.Add("x-custom", "2, 3")
	h.Add("Supported", "timer")

	t.Run("RFC3261 7.3.1 Get returns the first row", func(t *testing.T) {
		for _, n := range []string{"Subject", "s", "SUBJECT"} {
			if got := h.Get(n); got != "first" {
				t.Errorf("Get(%q) = %q, want first", n, got)
			}
		}
		if got := h.Get("X-CUSTOM"); got != "1" {
			t.Errorf("Get(X-CUSTOM) = %q", got)
		}
		if got := h.Get("Absent"); got != "" {
			t.Errorf("Get(Absent) = %q", got)
		}
	})
	t.Run("RFC3261 7.3.1 Values splits rows at commas", func(t *testing.T) {
		if got := h.Values("x-Custom"); !slices.Equal(got, []string{"1", "2", "3"}) {
			t.Errorf("Values = %q", got)
		}
		if got := h.Values("s"); !slices.Equal(got, []string{"first", "second"}) {
			t.Errorf("Values(s) = %q", got)
		}
		if got := h.Values("Absent"); got != nil {
			t.Errorf("Values(Absent) = %q", got)
		}
	})
	t.Run("RFC3261 7.3.1 Has", func(t *testing.T) {
		if !h.Has("subject") || !h.Has("X-custom") || h.Has("Absent") || h.Has("Via") {
			t.Error("Has is wrong")
		}
	})
	t.Run("RFC3261 7.3.1 an unknown name does not match a known one", func(t *testing.T) {
		var g Header
		g.Add("Subjectx", "1")
		if g.Has("Subject") || g.Get("Subject") != "" {
			t.Error("Subjectx matched Subject")
		}
	})
	t.Run("Set replaces every row", func(t *testing.T) {
		h.Set("SUBJECT", "third")
		if got := h.Values("Subject"); !slices.Equal(got, []string{"third"}) {
			t.Errorf("Values = %q", got)
		}
	})
	t.Run("Del removes every row and keeps the order of the rest", func(t *testing.T) {
		h.Del("x-custom")
		var names []string
		for _, f := range h.Fields {
			names = append(names, f.Name)
		}
		if !slices.Equal(names, []string{"Supported", "SUBJECT"}) {
			t.Errorf("Fields = %q", names)
		}
		h.Del("Absent")
		if len(h.Fields) != 2 {
			t.Errorf("Del of an absent name changed Fields")
		}
	})
	t.Run("RFC3261 20.37 HasOption", func(t *testing.T) {
		if !h.HasOption("Supported", "TIMER") || h.HasOption("Supported", "100rel") || h.HasOption("Require", "timer") {
			t.Error("HasOption is wrong")
		}
	})
}

func TestHeaderAddTypedPanics(t *testing.T) {
	for _, name := range []string{"Via", "v", "From", "To", "Call-ID", "i", "CSeq", "Contact", "m", "Route", "Record-Route", "Max-Forwards", "Content-Length", "l", "Content-Type", "c"} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%q) did not panic: typed headers are set through their fields", name)
				}
			}()
			var h Header
			h.Add(name, "x")
		})
	}
}

func TestHeaderGetTyped(t *testing.T) {
	var h Header
	h.MaxForwards = -1
	for _, n := range []string{"Via", "From", "To", "Call-ID", "CSeq", "Contact", "Route", "Record-Route", "Max-Forwards", "Content-Type", "Content-Length"} {
		if got := h.Get(n); got != "" {
			t.Errorf("empty header: Get(%q) = %q", n, got)
		}
	}
	h.MaxForwards = 0
	h.CSeq = CSeq{4294967295, "REGISTER"}
	h.CallID = "x@y"
	h.ContentType = "application/sdp"
	tests := map[string]string{
		"Max-Forwards": "0",
		"CSeq":         "4294967295 REGISTER",
		"i":            "x@y",
		"c":            "application/sdp",
		"l":            "",
	}
	for n, want := range tests {
		if got := h.Get(n); got != want {
			t.Errorf("Get(%q) = %q, want %q", n, got, want)
		}
	}
}

// TestFieldLiteral: a Field built as a struct literal, without the cached
// canonical name the parser sets, is still found by its full or compact name.
func TestFieldLiteral(t *testing.T) {
	var h Header
	h.Fields = append(h.Fields, Field{Name: "s", Value: "hello"}, Field{Name: "X-Custom", Value: "1"})
	if got := h.Get("Subject"); got != "hello" {
		t.Errorf("Get(Subject) = %q", got)
	}
	if !h.Has("x-custom") {
		t.Error("Has(x-custom)")
	}
	h.Del("subject")
	if h.Has("s") {
		t.Error("Del(subject) left the compact field")
	}
}
