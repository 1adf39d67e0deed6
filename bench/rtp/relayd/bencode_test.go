package main

import (
	"reflect"
	"testing"
)

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{"command": "offer", "sdp": "v=0\r\n", "n": int64(-3), "flags": []any{"a", int64(1)}}
	out, err := decode(encode(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: got %#v, want %#v", out, in)
	}
}

func TestBencodeRejects(t *testing.T) {
	for _, s := range []string{"", "i12", "5:abc", "d1:ae", "di1e1:ae", "l", "x", "1:ab", "99999999999:a"} {
		if _, err := decode([]byte(s)); err == nil {
			t.Errorf("decode(%q): no error", s)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("d7:command4:pinge"))
	f.Add([]byte("d3:sdp5:v=0\r\n5:flagsl1:aee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes to the same.
		v2, err := decode(encode(nil, v))
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-decode of %q: %#v, %v", b, v2, err)
		}
	})
}
