package sip

import "testing"

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		display     string // Display as written
		displayName string // DisplayName()
		uri         string
		params      Params
		tag         string
		written     string // String()
	}{
		{"RFC3261 20.20 quoted display name and tag",
			`"Alice" <sip:alice@atlanta.com>;tag=1928301774`,
			`"Alice"`, "Alice", "sip:alice@atlanta.com", ";tag=1928301774", "1928301774",
			`"Alice" <sip:alice@atlanta.com>;tag=1928301774`},
		{"RFC4475 3.1.1.1 escaped backslash and quote in display name",
			`"J Rosenberg \\\""       <sip:jdrosen@example.com>`,
			`"J Rosenberg \\\""`, `J Rosenberg \"`, "sip:jdrosen@example.com", "", "",
			`"J Rosenberg \\\"" <sip:jdrosen@example.com>`},
		{"RFC4475 3.1.1.1 escaped quotes and LWS around parameters",
			`"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam = newvalue ;  secondparam ; q = 0.33`,
			`"Quoted string \"\""`, `Quoted string ""`, "sip:jdrosen@example.com", ";newparam=newvalue;secondparam;q=0.33", "",
			`"Quoted string \"\"" <sip:jdrosen@example.com>;newparam=newvalue;secondparam;q=0.33`},
		{"RFC3261 25.1 token display name",
			`Bob <sip:bob@biloxi.example.com>`,
			"Bob", "Bob", "sip:bob@biloxi.example.com", "", "",
			`Bob <sip:bob@biloxi.example.com>`},
		{"RFC4475 3.1.1.2 intmeth display name of several unusual tokens",
			"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.",
			"token1~` token2'+_ token3*%!.-", "token1~` token2'+_ token3*%!.-", "sip:mundane@example.com", ";tag=_token~1'+`*%!-.", "_token~1'+`*%!-.",
			"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-."},
		{"RFC4475 3.1.1.6 no LWS between display name and <",
			`caller<sip:caller@example.com>;tag=323`,
			"caller", "caller", "sip:caller@example.com", ";tag=323", "323",
			`caller <sip:caller@example.com>;tag=323`},
		{"RFC3261 25.1 no LWS between quoted display name and <",
			`"Caller"<sip:caller@example.com>`,
			`"Caller"`, "Caller", "sip:caller@example.com", "", "",
			`"Caller" <sip:caller@example.com>`},
		{"RFC3261 25.1 empty quoted display name",
			`"" <sip:a@example.com>`,
			`""`, "", "sip:a@example.com", "", "",
			`"" <sip:a@example.com>`},
		{"RFC3261 25.1 UTF-8 in a quoted display name",
			"\"Al\xc3\xadce\" <sip:alice@atlanta.com>",
			"\"Al\xc3\xadce\"", "Al\xc3\xadce", "sip:alice@atlanta.com", "", "",
			"\"Al\xc3\xadce\" <sip:alice@atlanta.com>"},
		{"RFC3261 25.1 name-addr without display name",
			`  <sip:alice@atlanta.com>  `,
			"", "", "sip:alice@atlanta.com", "", "",
			`<sip:alice@atlanta.com>`},
		{"RFC3261 20.10 addr-spec: semicolon starts header parameters (RFC4475 3.3.12 cparam01)",
			`sip:+19725552222@gw1.example.net;unknownparam`,
			"", "", "sip:+19725552222@gw1.example.net", ";unknownparam", "",
			`<sip:+19725552222@gw1.example.net>;unknownparam`},
		{"RFC4475 3.3.13 cparam02 url-parameter stays in the URI",
			`<sip:+19725552222@gw1.example.net;unknownparam>`,
			"", "", "sip:+19725552222@gw1.example.net;unknownparam", "", "",
			`<sip:+19725552222@gw1.example.net;unknownparam>`},
		{"RFC3261 20.10 addr-spec with tag",
			`sip:caller@example.net;tag=134161461246`,
			"", "", "sip:caller@example.net", ";tag=134161461246", "134161461246",
			`<sip:caller@example.net>;tag=134161461246`},
		{"RFC3261 20.10 addr-spec with LWS before the parameters",
			`sip:caller@example.net ; tag = 1`,
			"", "", "sip:caller@example.net", ";tag=1", "1",
			`<sip:caller@example.net>;tag=1`},
		{"RFC3261 20.10 name-addr keeps URI and header parameters apart",
			`<sip:p1.example.com;lr>;x=1`,
			"", "", "sip:p1.example.com;lr", ";x=1", "",
			`<sip:p1.example.com;lr>;x=1`},
		{"RFC4475 3.3.4 unksm2 unknown scheme addr-spec",
			`isbn:2983792873`,
			"", "", "isbn:2983792873", "", "",
			`<isbn:2983792873>`},
		{"RFC4475 3.3.4 unksm2 http URI with tag",
			`<http://www.example.com>;tag=3234233`,
			"", "", "http://www.example.com", ";tag=3234233", "3234233",
			`<http://www.example.com>;tag=3234233`},
		{"RFC5118 4.1 IPv6 reference",
			`"Caller" <sip:caller@[2001:db8::1]>`,
			`"Caller"`, "Caller", "sip:caller@[2001:db8::1]", "", "",
			`"Caller" <sip:caller@[2001:db8::1]>`},
		{"RFC3966 tel addr-spec with header parameter",
			`tel:+15551234;tag=x`,
			"", "", "tel:+15551234", ";tag=x", "x",
			`<tel:+15551234>;tag=x`},
		{"RFC5626 4.2 quoted instance id",
			`<sip:bob@192.0.2.4:5060;transport=udp>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`,
			"", "", "sip:bob@192.0.2.4:5060;transport=udp", `;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`, "",
			`<sip:bob@192.0.2.4:5060;transport=udp>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`},
		{"RFC4475 3.1.1.2 quoted display name with escaped control characters",
			"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
			"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\"", "BEL:\x07 NUL:\x00 DEL:\x7f", "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com", "", "",
			"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAddress(tt.in)
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tt.in, err)
			}
			if a.Display != tt.display {
				t.Errorf("Display = %q, want %q", a.Display, tt.display)
			}
			if got := a.DisplayName(); got != tt.displayName {
				t.Errorf("DisplayName() = %q, want %q", got, tt.displayName)
			}
			if got := a.URI.String(); got != tt.uri {
				t.Errorf("URI = %q, want %q", got, tt.uri)
			}
			if a.Params != tt.params {
				t.Errorf("Params = %q, want %q", a.Params, tt.params)
			}
			if got := a.Tag(); got != tt.tag {
				t.Errorf("Tag() = %q, want %q", got, tt.tag)
			}
			if a.Wildcard || a.IsZero() {
				t.Errorf("Wildcard = %v, IsZero() = %v", a.Wildcard, a.IsZero())
			}
			if got := a.String(); got != tt.written {
				t.Errorf("String() = %q, want %q", got, tt.written)
			}
			a2, err := ParseAddress(a.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", a.String(), err)
			}
			if a2 != a {
				t.Errorf("reparse changed the address\n got %#v\nwant %#v", a2, a)
			}
		})
	}
}

func TestParseAddressInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"RFC3261 25.1 empty", ""},
		{"RFC3261 25.1 only LWS", " \t "},
		{"RFC4475 3.1.2.6 unterminated quoted display name", `"Mr. J. User <sip:j.user@example.com>`},
		{"RFC4475 3.1.2.6 quoted pair swallowing the closing quote", `"abc\" <sip:a@example.com>`},
		{"RFC4475 3.1.2.15 comma in unquoted display name", `Bell, Alexander <sip:a.g.bell@example.com>;tag=43`},
		{"RFC3261 25.1 at sign in unquoted display name", `alice@home <sip:alice@atlanta.com>`},
		{"RFC3261 25.1 quote inside token display name", `abc"def" <sip:a@example.com>`},
		{"RFC4475 3.1.2.13 regbadct header in addr-spec", `sip:user@example.com?Route=%3Csip:sip.example.com%3E`},
		{"RFC3261 20.10 comma in addr-spec", `sip:a@example.com,b`},
		{"RFC3261 20.10 space in addr-spec", `sip:a@example.com x`},
		{"RFC4475 3.1.2.14 badaspec spaces within angle brackets", `"Watson, Thomas" < sip:t.watson@example.org >`},
		{"RFC3261 25.1 missing >", `<sip:alice@atlanta.com`},
		{"RFC3261 25.1 quoted display name without <>", `"Alice" sip:alice@atlanta.com`},
		{"RFC3261 25.1 junk after >", `<sip:alice@atlanta.com> junk`},
		{"RFC4475 3.1.2.1 empty header parameters", `"Joe" <sip:joe@example.org>;;;;`},
		{"RFC3261 25.1 parameter without value after =", `<sip:alice@atlanta.com>;tag=`},
		{"RFC3261 25.1 invalid URI inside <>", `<sip:alice@atlanta.com:0>`},
		{"RFC3261 25.1 empty <>", `<>`},
		{"RFC3261 25.1 no scheme", `alice@atlanta.com`},
		{"RFC3261 10.2.2 wildcard is only for Contact", `*`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, err := ParseAddress(tt.in); err == nil {
				t.Errorf("ParseAddress(%q) = %#v, want an error", tt.in, a)
			}
		})
	}
}

func TestAddressAppendTo(t *testing.T) {
	tests := []struct {
		name string
		addr Address
		want string
	}{
		{"RFC3261 10.2.2 wildcard", Address{Wildcard: true}, "*"},
		{"RFC3261 20.10 URI always inside <>",
			Address{URI: URI{Scheme: "sip", User: "a", Host: "example.com", Params: ";lr"}, Params: ";tag=1"},
			"<sip:a@example.com;lr>;tag=1"},
		{"RFC3261 20.10 display name",
			Address{Display: QuoteDisplay(`J "R"`), URI: URI{Scheme: "sip", Host: "example.com"}},
			`"J \"R\"" <sip:example.com>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.addr.AppendTo([]byte("x"))); got != "x"+tt.want {
				t.Errorf("AppendTo = %q, want %q", got, "x"+tt.want)
			}
			if got := tt.addr.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuoteDisplay(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"RFC3261 25.1 plain", "Alice", `"Alice"`},
		{"RFC3261 25.1 empty", "", `""`},
		{"RFC3261 25.1 quote and backslash are escaped", `J "R" \`, `"J \"R\" \\"`},
		{"RFC3261 25.1 comma needs no escape", "Bell, Alexander", `"Bell, Alexander"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := QuoteDisplay(tt.in)
			if got != tt.want {
				t.Fatalf("QuoteDisplay(%q) = %q, want %q", tt.in, got, tt.want)
			}
			a, err := ParseAddress(got + " <sip:a@example.com>")
			if err != nil {
				t.Fatal(err)
			}
			if a.DisplayName() != tt.in {
				t.Errorf("DisplayName() = %q, want %q", a.DisplayName(), tt.in)
			}
		})
	}
}

func TestAddressIsZero(t *testing.T) {
	var a Address
	if !a.IsZero() {
		t.Error("zero Address: IsZero() = false")
	}
	if (&Address{Wildcard: true}).IsZero() {
		t.Error("wildcard: IsZero() = true")
	}
	if (&Address{URI: URI{Scheme: "sip", Host: "h"}}).IsZero() {
		t.Error("address with URI: IsZero() = true")
	}
}
