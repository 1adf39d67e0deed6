package bencode

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Values survive an encode and a decode; the encoding is the canonical
// one of BEP 3 (keys sorted), byte for byte.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		v    any
		enc  string
	}{
		{"empty string", "", "0:"},
		{"string", "spam", "4:spam"},
		{"binary string", "a\x00b\r\n\xff", "6:a\x00b\r\n\xff"},
		{"zero", int64(0), "i0e"},
		{"negative", int64(-42), "i-42e"},
		{"int64 max", int64(9223372036854775807), "i9223372036854775807e"},
		{"int64 min", int64(-9223372036854775808), "i-9223372036854775808e"},
		{"empty list", []any{}, "le"},
		{"list", []any{"a", int64(1), []any{}}, "l1:ai1elee"},
		{"empty dict", map[string]any{}, "de"},
		{"dict sorted", map[string]any{"b": int64(2), "a": "x", "": ""}, "d0:0:1:a1:x1:bi2ee"},
		{"NG ping", map[string]any{"command": "ping"}, "d7:command4:pinge"},
		{"nested", map[string]any{"l": []any{map[string]any{"k": []any{"v"}}}}, "d1:lld1:kl1:veeee"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Append(nil, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.enc {
				t.Errorf("encoded %q, want %q", b, tc.enc)
			}
			v, err := Decode(b)
			if err != nil {
				t.Fatalf("decode %q: %v", b, err)
			}
			if !reflect.DeepEqual(v, tc.v) {
				t.Errorf("decoded %#v, want %#v", v, tc.v)
			}
		})
	}
}

// The request-side types encode as their decoded counterparts.
func TestRequestTypes(t *testing.T) {
	b, err := Append(nil, map[string]any{"s": []byte("sdp"), "n": 7, "f": []string{"a", "bc"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "d1:fl1:a2:bce1:ni7e1:s3:sdpe"; string(b) != want {
		t.Errorf("encoded %q, want %q", b, want)
	}
	if _, err := Append(nil, map[string]any{"x": 1.5}); !errors.Is(err, ErrInvalid) {
		t.Errorf("float encoded: %v", err)
	}
}

// rtpengine writes dictionary keys in any order; BEP 3 wants them sorted.
// The decoder takes both.
func TestUnsortedKeys(t *testing.T) {
	v, err := Decode([]byte("d6:result2:ok3:sdp3:v=0e"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"result": "ok", "sdp": "v=0"}; !reflect.DeepEqual(v, want) {
		t.Errorf("got %#v, want %#v", v, want)
	}
}

// Malformed input is an error, never a panic or a partial value.
func TestMalformed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"unknown type", "x"},
		{"string without colon", "4spam"},
		{"string short", "5:spam"},
		{"string length leading zero", "04:spam"},
		{"string length overflow", "99999999999999999999999:x"},
		{"bare colon", ":"},
		{"negative string length", "-1:x"},
		{"int empty", "ie"},
		{"int unterminated", "i42"},
		{"int leading zero", "i042e"},
		{"int negative zero", "i-0e"},
		{"int bare minus", "i-e"},
		{"int plus", "i+1e"},
		{"int not digits", "i1x2e"},
		{"int overflow", "i9223372036854775808e"},
		{"int too long", "i" + strings.Repeat("1", 40) + "e"},
		{"list unterminated", "l1:a"},
		{"dict unterminated", "d1:a1:b"},
		{"dict missing value", "d1:ae"},
		{"dict int key", "di1e1:ae"},
		{"dict list key", "dle1:ae"},
		{"dict duplicate key", "d1:a1:x1:a1:ye"},
		{"trailing bytes", "4:spamx"},
		{"two values", "i1ei2e"},
		{"stray end", "e"},
		{"too deep list", strings.Repeat("l", maxDepth+1) + strings.Repeat("e", maxDepth+1)},
		{"too deep dict", strings.Repeat("d1:k", maxDepth+1) + "0:" + strings.Repeat("e", maxDepth+1)},
		{"very deep", strings.Repeat("l", 100000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Decode([]byte(tc.in))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("decode %q = %#v, %v; want a bencode error", tc.in, v, err)
			}
		})
	}
}

// The depth limit is inclusive: maxDepth nested containers decode.
func TestDepthLimit(t *testing.T) {
	in := strings.Repeat("l", maxDepth) + strings.Repeat("e", maxDepth)
	if _, err := Decode([]byte(in)); err != nil {
		t.Errorf("%d nested lists: %v", maxDepth, err)
	}
}

// FuzzDecode: any input decodes or fails cleanly; what decodes
// re-encodes to a document that decodes to the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"d7:command4:pinge", "d6:result4:ponge", "i-1e", "le", "de", "0:",
		"d6:result5:error12:error-reason15:Unknown call-ide",
		"d4:tagsd1:ad3:tag1:a6:mediasld7:streamsld5:statsd7:packetsi5e5:bytesi860e6:errorsi0eeeeeeeee6:result2:oke",
		"d4:tagsd1:ali1eee", "d4:tagsl1:ae", "d4:tagsd1:ad6:mediasl1:xeeee",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := Decode(in)
		if err != nil {
			return
		}
		b, err := Append(nil, v)
		if err != nil {
			t.Fatalf("re-encode of %#v: %v", v, err)
		}
		w, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", b, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip changed %#v into %#v", v, w)
		}
	})
}
