package sip

import "testing"

// parseVia parses one via-parm as the message parser does for a well-formed
// Via header field.
func parseVia(s string) (Via, error) {
	var v Via
	err := v.parse(s, true)
	return v, err
}

func TestParseVia(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		proto     string
		transport string
		host      string
		port      int
		params    Params
		written   string
	}{
		{"RFC3261 20.42 UDP with branch",
			"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
			"SIP/2.0", "UDP", "pc33.atlanta.com", 0, ";branch=z9hG4bK776asdhds",
			"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"},
		{"RFC3261 20.42 sent-by with port",
			"SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKx",
			"SIP/2.0", "TCP", "192.0.2.1", 5060, ";branch=z9hG4bKx",
			"SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKx"},
		{"RFC3261 25.1 LWS around every separator",
			"SIP / 2.0 / UDP host ; branch = x",
			"SIP/2.0", "UDP", "host", 0, ";branch=x",
			"SIP/2.0/UDP host;branch=x"},
		{"RFC4475 3.1.1.1 wsinv LWS and line folds inside a Via",
			"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
			"SIP/2.0", "UDP", "192.0.2.2", 0, ";branch=390skdjuw",
			"SIP/2.0/UDP 192.0.2.2;branch=390skdjuw"},
		{"RFC4475 3.1.1.1 wsinv LWS before the parameters",
			"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
			"SIP/2.0", "TCP", "spindle.example.com", 0, ";branch=z9hG4bK9ikj8",
			"SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"},
		{"RFC3261 25.1 LWS around the port colon",
			"SIP/2.0/UDP host : 5070 ;branch=x",
			"SIP/2.0", "UDP", "host", 5070, ";branch=x",
			"SIP/2.0/UDP host:5070;branch=x"},
		{"RFC3261 18.2.1 received, RFC3581 rport with value",
			"SIP/2.0/UDP 192.0.2.1:5060;received=192.0.2.2;rport=5061;branch=z9hG4bKx",
			"SIP/2.0", "UDP", "192.0.2.1", 5060, ";received=192.0.2.2;rport=5061;branch=z9hG4bKx",
			"SIP/2.0/UDP 192.0.2.1:5060;received=192.0.2.2;rport=5061;branch=z9hG4bKx"},
		{"RFC3261 18.1.1 maddr and ttl",
			"SIP/2.0/UDP h.example.com;maddr=224.2.0.1;ttl=16;branch=z9hG4bKx",
			"SIP/2.0", "UDP", "h.example.com", 0, ";maddr=224.2.0.1;ttl=16;branch=z9hG4bKx",
			"SIP/2.0/UDP h.example.com;maddr=224.2.0.1;ttl=16;branch=z9hG4bKx"},
		{"RFC5118 4.1 IPv6 sent-by",
			"SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
			"SIP/2.0", "UDP", "[2001:db8::9:1]", 0, ";branch=z9hG4bKas3-111",
			"SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111"},
		{"RFC5118 4.7 IPv6 sent-by with port",
			"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
			"SIP/2.0", "UDP", "[2001:db8::9:1]", 6050, ";branch=z9hG4bKas3-111",
			"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111"},
		{"RFC5118 4.9 IPv4-mapped IPv6 sent-by",
			"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
			"SIP/2.0", "UDP", "[::ffff:192.0.2.10]", 19823, ";branch=z9hG4bKbh19",
			"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19"},
		{"RFC5118 4.5 received with IPv6 delimiters",
			"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
			"SIP/2.0", "UDP", "[2001:db8::9:1]", 0, ";received=[2001:db8::9:255];branch=z9hG4bKas3-111",
			"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111"},
		{"RFC5118 4.5 received without IPv6 delimiters",
			"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
			"SIP/2.0", "UDP", "[2001:db8::9:1]", 0, ";received=2001:db8::9:255;branch=z9hG4bKas3",
			"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3"},
		{"RFC4475 3.1.1.10 unknown transport",
			"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
			"SIP/2.0", "UNKNOWN", "t4.example.com", 0, ";branch=z9hG4bKasd0f3en",
			"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en"},
		{"RFC7118 5 WSS transport",
			"SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf",
			"SIP/2.0", "WSS", "df7jal23ls0d.invalid", 0, ";branch=z9hG4bKasudf",
			"SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf"},
		{"RFC4475 3.1.2.16 badvers unknown protocol version",
			"SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
			"SIP/7.0", "UDP", "c.example.com", 0, ";branch=z9hG4bKkdjuw",
			"SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw"},
		{"RFC4475 3.4.1 inv2543 no branch",
			"SIP/2.0/UDP iftgw.example.com",
			"SIP/2.0", "UDP", "iftgw.example.com", 0, "",
			"SIP/2.0/UDP iftgw.example.com"},
		{"RFC4475 3.1.1.2 intmeth branch of unusual token characters",
			"SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
			"SIP/2.0", "TCP", "host1.example.com", 0, ";branch=z9hG4bK-.!%66*_+`'~",
			"SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~"},
		{"RFC3261 25.1 quoted parameter value with semicolon and comma",
			`SIP/2.0/UDP h;x="a;b,c";branch=z9hG4bKx`,
			"SIP/2.0", "UDP", "h", 0, `;x="a;b,c";branch=z9hG4bKx`,
			`SIP/2.0/UDP h;x="a;b,c";branch=z9hG4bKx`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseVia(tt.in)
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.in, err)
			}
			want := Via{Proto: tt.proto, Transport: tt.transport, Host: tt.host, Port: tt.port, Params: tt.params}
			if v != want {
				t.Errorf("parse(%q)\n got %#v\nwant %#v", tt.in, v, want)
			}
			if got := v.String(); got != tt.written {
				t.Errorf("String() = %q, want %q", got, tt.written)
			}
			v2, err := parseVia(v.String())
			if err != nil || v2 != v {
				t.Errorf("reparse of %q = %#v, %v; want %#v", v.String(), v2, err, v)
			}
		})
	}
}

func TestParseViaInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"RFC3261 20.42 empty", ""},
		{"RFC3261 20.42 no transport", "SIP/2.0 host.example.com"},
		{"RFC3261 20.42 no protocol version", "SIP/UDP host.example.com"},
		{"RFC3261 20.42 no sent-by", "SIP/2.0/UDP"},
		{"RFC3261 20.42 no sent-by before parameters", "SIP/2.0/UDP ;branch=z9hG4bKx"},
		{"RFC3261 20.42 no LWS between transport and sent-by", "SIP/2.0/UDP/host.example.com"},
		{"RFC3261 25.1 protocol name is not a token", "S@P/2.0/UDP host.example.com"},
		{"RFC3261 25.1 port 0", "SIP/2.0/UDP host.example.com:0"},
		{"RFC3261 25.1 port 65536", "SIP/2.0/UDP host.example.com:65536"},
		{"RFC3261 25.1 port with letters", "SIP/2.0/UDP host.example.com:ab"},
		{"RFC3261 25.1 empty port", "SIP/2.0/UDP host.example.com:;branch=z9hG4bKx"},
		{"RFC5118 4.2 unbracketed IPv6 sent-by", "SIP/2.0/UDP 2001:db8::1;branch=z9hG4bKx"},
		{"RFC3261 25.1 unterminated IPv6 reference", "SIP/2.0/UDP [2001:db8::1;branch=z9hG4bKx"},
		{"RFC3261 25.1 IPv4 address in brackets", "SIP/2.0/UDP [192.0.2.1];branch=z9hG4bKx"},
		{"RFC4475 3.1.2.1 badinv01 extraneous separators", "SIP/2.0/UDP 192.0.2.15;;,;,,"},
		{"RFC4475 3.1.2.1 trailing semicolon", "SIP/2.0/UDP host.example.com;branch=z9hG4bKx;"},
		{"RFC3261 25.1 junk after sent-by", "SIP/2.0/UDP host.example.com junk"},
		{"RFC3261 25.1 parameter without value after =", "SIP/2.0/UDP host.example.com;branch="},
		{"RFC3261 25.1 unterminated quoted parameter", `SIP/2.0/UDP host.example.com;x="abc`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := parseVia(tt.in); err == nil {
				t.Errorf("parse(%q) = %#v, want an error", tt.in, v)
			}
		})
	}
}

func TestViaAccessors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		branch   string
		received string
		rport    int
		hasRPort bool
		sentBy   string
	}{
		{"RFC3261 8.1.1.7 branch with magic cookie", "SIP/2.0/UDP h.example.com;branch=z9hG4bK776asdhds",
			"z9hG4bK776asdhds", "", 0, false, "h.example.com"},
		{"RFC3581 3 rport without value", "SIP/2.0/UDP h.example.com:5060;rport;branch=z9hG4bKx",
			"z9hG4bKx", "", 0, true, "h.example.com:5060"},
		{"RFC3581 4 rport and received filled in", "SIP/2.0/UDP h.example.com:5060;branch=z9hG4bKx;received=192.0.2.9;rport=6060",
			"z9hG4bKx", "192.0.2.9", 6060, true, "h.example.com:5060"},
		{"RFC3261 7.3.1 parameter names are case-insensitive", "SIP/2.0/UDP h.example.com;BRANCH=z9hG4bKx;Received=192.0.2.9;RPort=1",
			"z9hG4bKx", "192.0.2.9", 1, true, "h.example.com"},
		{"RFC4475 3.2.1 badbranch cookie only", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK",
			"z9hG4bK", "", 0, false, "192.0.2.1"},
		{"RFC5118 4.5 received with brackets", "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]",
			"", "[2001:db8::9:255]", 0, false, "[2001:db8::9:1]"},
		{"RFC5118 4.5 received without brackets", "SIP/2.0/UDP [2001:db8::9:1]:5060;received=2001:db8::9:255",
			"", "2001:db8::9:255", 0, false, "[2001:db8::9:1]:5060"},
		{"RFC3261 20.42 no parameters", "SIP/2.0/UDP iftgw.example.com",
			"", "", 0, false, "iftgw.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseVia(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Branch(); got != tt.branch {
				t.Errorf("Branch() = %q, want %q", got, tt.branch)
			}
			if got := v.Received(); got != tt.received {
				t.Errorf("Received() = %q, want %q", got, tt.received)
			}
			if port, ok := v.RPort(); port != tt.rport || ok != tt.hasRPort {
				t.Errorf("RPort() = %d, %v; want %d, %v", port, ok, tt.rport, tt.hasRPort)
			}
			if got := v.SentBy(); got != tt.sentBy {
				t.Errorf("SentBy() = %q, want %q", got, tt.sentBy)
			}
		})
	}
}

func TestViaAppendTo(t *testing.T) {
	tests := []struct {
		name string
		via  Via
		want string
	}{
		{"RFC3261 20.42 empty Proto is written as SIP/2.0", Via{Transport: "UDP", Host: "h.example.com"}, "SIP/2.0/UDP h.example.com"},
		{"RFC3261 8.1.1.7 built branch", Via{Proto: "SIP/2.0", Transport: "TLS", Host: "[2001:db8::1]", Port: 5061, Params: Params("").Set("branch", NewBranch("abc"))},
			"SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKabc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.via.AppendTo([]byte("Via: "))); got != "Via: "+tt.want {
				t.Errorf("AppendTo = %q, want %q", got, "Via: "+tt.want)
			}
			if got := tt.via.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
	if got := NewBranch("x"); got != MagicCookie+"x" || MagicCookie != "z9hG4bK" {
		t.Errorf("NewBranch(x) = %q", got)
	}
}
