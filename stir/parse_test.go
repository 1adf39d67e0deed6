package stir

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeTN(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"12025550100", "12025550100", true},
		{"+12025550100", "12025550100", true},
		{"+1-202-555-0100", "12025550100", true},
		{"+1 (202) 555.0100", "", false}, // space is not a visual separator of RFC 3966
		{"+1(202)555.0100", "12025550100", true},
		{"tel:+1-202-555-0100", "12025550100", true},
		{"TEL:+12025550100;phone-context=example.com", "12025550100", true},
		{"sip:+12025550100@example.com;user=phone", "12025550100", true},
		{"sips:+12025550100;npdi@example.com", "12025550100", true},
		{"<sip:+12025550100@example.com>", "12025550100", true},
		{" 12025550100 ", "12025550100", true},
		{"sip:alice@example.com", "", false},
		{"sip:example.com", "", false},
		{"tel:*67", "", false},
		{"", "", false},
		{"+", "", false},
		{"--", "", false},
		{"123456789012345", "123456789012345", true},    // 15 digits, E.164's longest
		{"1234567890123456", "", false},                 // 16
		{"+1-2-3-4-5-6-7-8-9-0-1-2-3-4-5-6", "", false}, // 16 with separators
		{"<sip:+1@x", "", false},
		{"١٢٣", "", false}, // non-ASCII digits
	}
	for _, tt := range tests {
		got, ok := NormalizeTN(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeTN(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseIdentity(t *testing.T) {
	const tok = "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.c2ln"
	tests := []struct {
		name   string
		in     string
		token  string
		params IdentityParams
		err    bool
	}{
		{"RFC 8224 4.1 full", tok + ";info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken",
			tok, IdentityParams{Info: "https://cert.example.org/passport.cer", Alg: "ES256", Ppt: "shaken"}, false},
		{"alg absent defaults to ES256", tok + ";info=<https://c.example/x.pem>",
			tok, IdentityParams{Info: "https://c.example/x.pem", Alg: "ES256"}, false},
		{"whitespace and case", "  " + tok + " ; INFO = <https://c.example/x.pem> ;\tAlg=ES256; PPT = \"shaken\" ",
			tok, IdentityParams{Info: "https://c.example/x.pem", Alg: "ES256", Ppt: "shaken"}, false},
		{"info without brackets", tok + ";info=https://c.example/x.pem;ppt=shaken",
			tok, IdentityParams{Info: "https://c.example/x.pem", Alg: "ES256", Ppt: "shaken"}, false},
		{"quoted info", tok + `;info="https://c.example/x.pem"`,
			tok, IdentityParams{Info: "https://c.example/x.pem", Alg: "ES256"}, false},
		{"semicolon inside brackets", tok + ";info=<https://c.example/x;v=1>;ppt=shaken",
			tok, IdentityParams{Info: "https://c.example/x;v=1", Alg: "ES256", Ppt: "shaken"}, false},
		{"extension params skipped", tok + ";info=<https://c.example/x.pem>;foo;bar=baz",
			tok, IdentityParams{Info: "https://c.example/x.pem", Alg: "ES256"}, false},
		{"compact form token", "eyJhbGciOiJFUzI1NiJ9..c2ln;info=<https://c.example/x.pem>",
			"eyJhbGciOiJFUzI1NiJ9..c2ln", IdentityParams{Info: "https://c.example/x.pem", Alg: "ES256"}, false},
		{"no info", tok + ";alg=ES256;ppt=shaken", "", IdentityParams{}, true},
		{"no params", tok, "", IdentityParams{}, true},
		{"empty", "", "", IdentityParams{}, true},
		{"empty token", ";info=<https://c.example/x.pem>", "", IdentityParams{}, true},
		{"bad token char", "abc!def;info=<https://c.example/x.pem>", "", IdentityParams{}, true},
		{"space in token", "abc def;info=<https://c.example/x.pem>", "", IdentityParams{}, true},
		{"two infos", tok + ";info=<https://a/>;info=<https://b/>", "", IdentityParams{}, true},
		{"unterminated bracket", tok + ";info=<https://c.example/x.pem", "", IdentityParams{}, true},
		{"unterminated quote", tok + `;info="https://c.example/x.pem`, "", IdentityParams{}, true},
		{"garbage after value", tok + ";info=<https://a/> x", "", IdentityParams{}, true},
		{"empty param", tok + ";info=<https://a/>;;", "", IdentityParams{}, true},
		{"empty value", tok + ";info=", "", IdentityParams{}, true},
		{"empty brackets", tok + ";info=<>", "", IdentityParams{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, params, err := ParseIdentity(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if token != tt.token || params != tt.params {
				t.Errorf("got %q %+v, want %q %+v", token, params, tt.token, tt.params)
			}
		})
	}
}

func TestParseIdentityTooLong(t *testing.T) {
	h := string(bytes.Repeat([]byte("a"), maxIdentityLen)) + ";info=<https://a/>"
	if _, _, err := ParseIdentity(h); err == nil {
		t.Error("accepted a header longer than maxIdentityLen")
	}
}

func TestTNAuthList(t *testing.T) {
	t.Run("RFC 8226 SPC, explicit tag", func(t *testing.T) {
		// SEQUENCE { [0] { IA5String "709J" } }: the form in SHAKEN certificates.
		der, _ := hex.DecodeString("3008a0061604373039" + "4a")
		l, err := ParseTNAuthList(der)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(l, TNAuthList{SPCs: []string{"709J"}}) {
			t.Errorf("got %+v", l)
		}
		out, err := l.Marshal()
		if err != nil || !bytes.Equal(out, der) {
			t.Errorf("Marshal = %x, %v; want %x", out, err, der)
		}
	})
	t.Run("implicit tags accepted", func(t *testing.T) {
		// SEQUENCE { [0] IMPLICIT "709J", [2] IMPLICIT "12025550100",
		//            [1] IMPLICIT { "12025550100", 100 } }
		one := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("12025550100")}
		spc := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: []byte("709J")}
		start, _ := asn1.MarshalWithParams("12025550100", "ia5")
		count, _ := asn1.Marshal(100)
		rng := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: append(start, count...)}
		der, err := asn1.Marshal([]asn1.RawValue{spc, one, rng})
		if err != nil {
			t.Fatal(err)
		}
		l, err := ParseTNAuthList(der)
		if err != nil {
			t.Fatal(err)
		}
		want := TNAuthList{SPCs: []string{"709J"}, TNs: []string{"12025550100"}, Ranges: []TNRange{{"12025550100", 100}}}
		if !reflect.DeepEqual(l, want) {
			t.Errorf("got %+v, want %+v", l, want)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		in := TNAuthList{SPCs: []string{"1234"}, Ranges: []TNRange{{"442071838750", 50}}, TNs: []string{"12025550100", "*67#"}}
		der, err := in.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out, err := ParseTNAuthList(der)
		if err != nil || !reflect.DeepEqual(in, out) {
			t.Errorf("got %+v, %v; want %+v", out, err, in)
		}
	})
	t.Run("covers", func(t *testing.T) {
		l := TNAuthList{Ranges: []TNRange{{"12025550100", 100}}, TNs: []string{"442071838750"}}
		for tn, want := range map[string]bool{
			"12025550100": true, "12025550199": true, "12025550200": false, "12025550099": false,
			"1202555010": false, "442071838750": true, "442071838751": false,
		} {
			if got := l.Covers(tn); got != want {
				t.Errorf("Covers(%s) = %v, want %v", tn, got, want)
			}
		}
	})
	bad := []struct{ name, der, why string }{
		{"empty sequence", "3000", "empty"},
		{"not a sequence", "0404deadbeef", "structure error"},
		{"trailing data", "3008a00616043730394a00", "trailing data"},
		{"universal entry", "3006160437303934", "want context-specific"},
		{"unknown tag", "3008a30616043730394a", "unknown entry tag 3"},
		{"bad TN chars", "3008a206160441424344", "not a telephone number"},
		{"range count 1", "300ea10c300a16053132333435020101", "count out of range"},
		{"empty SPC", "3004a0021600", "spc: empty"},
	}
	for _, tt := range bad {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			der, err := hex.DecodeString(tt.der)
			if err != nil {
				t.Fatal(err)
			}
			l, err := ParseTNAuthList(der)
			if err == nil || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ParseTNAuthList(%x) = %+v, %v; want error about %q", der, l, err, tt.why)
			}
		})
	}
}
