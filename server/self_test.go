package server

import (
	"net/netip"
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

// isSelf looks a host up as written first and parses only what can be an
// IP literal: every spelling of the server's names and addresses must
// still be recognised, and nothing else.
func TestIsSelf(t *testing.T) {
	sa := newSelfAddrs([]string{"Example.TEST"}, []Addr{
		{Proto: "UDP", Addr: netip.MustParseAddrPort("192.0.2.1:5060")},
		{Proto: "UDP", Addr: netip.MustParseAddrPort("[2001:db8::1]:5070")},
	})
	for uri, want := range map[string]bool{
		"sip:alice@example.test":              true,
		"sip:alice@EXAMPLE.test":              true,
		"sip:alice@example.test:5070":         true,
		"sip:alice@example.test:5999":         false,
		"sip:alice@localhost":                 true,
		"sip:192.0.2.1":                       true,
		"sip:192.0.2.1:5060":                  true,
		"sip:192.0.2.2":                       false,
		"sip:[2001:db8::1]":                   true,
		"sip:[2001:DB8:0::1]:5070":            true,
		"sip:[2001:db8::2]":                   false,
		"sip:[::ffff:192.0.2.1]":              true,
		"sip:bob@other.test":                  false,
		"sip:bob@1.other.test":                false,
		"sip:bob@example.test.other.test":     false,
		"sip:bob@example.test;transport=tcp":  true,
		"sip:bob@192.0.2.1;maddr=192.0.2.200": true,
	} {
		u, err := sip.ParseURI(uri)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if got := sa.isSelf(&u); got != want {
			t.Errorf("isSelf(%s) = %v, want %v", uri, got, want)
		}
	}
	u, _ := sip.ParseURI("sip:alice@example.test")
	if n := testing.AllocsPerRun(100, func() { sa.isSelf(&u) }); n != 0 {
		t.Errorf("isSelf of a domain allocates %v times", n)
	}
}
