package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecode: any body gets a JSON object or an *Error with a 400 or 413
// status, never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"source":"192.0.2.1","for":"1h"}`, `{"new":1}`, `{`, `[]`, `{"x":1}`, `{} {}`, `{"new":"1"}`, "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var b NewBan
		var m MWI
		for _, v := range []any{&b, &m} {
			r := httptest.NewRequest("POST", "/", strings.NewReader(body))
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 64)
			err := decode(r, v)
			if err == nil {
				continue
			}
			e, ok := err.(*Error)
			if !ok || (e.Status != 400 && e.Status != 413) || e.Message == "" {
				t.Fatalf("decode(%q) = %#v", body, err)
			}
		}
	})
}

// FuzzParseBanPrefix: a prefix it accepts is masked, unmapped and parses
// back to itself.
func FuzzParseBanPrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "2001:db8::/64", "::ffff:192.0.2.0/120", "::ffff:1.2.3.4/10", "fe80::1%eth0", "x", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseBanPrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("ParseBanPrefix(%q) = %v", s, p)
		}
		if q, err := ParseBanPrefix(p.String()); err != nil || q != p {
			t.Fatalf("%q → %v → %v, %v", s, p, q, err)
		}
	})
}
