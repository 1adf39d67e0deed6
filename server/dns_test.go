package server

import (
	"bytes"
	"testing"
)

// The proxy's flow-token key comes from the auth secret in the data
// directory: a restart (or another node with the same secret) keeps
// reaching NATed phones of dialogs set up before it.
func TestFlowKeyFromSecret(t *testing.T) {
	dir := t.TempDir()
	key := func(dir string) []byte {
		s, err := New(Config{Listen: []string{"udp:127.0.0.1:0"}, DataDir: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return append([]byte(nil), s.flowKey...)
	}
	first, again, other := key(dir), key(dir), key(t.TempDir())
	if len(first) < 32 || !bytes.Equal(first, again) {
		t.Errorf("key %x, after a restart %x: want the same 32 bytes", first, again)
	}
	if bytes.Equal(first, other) {
		t.Error("two data directories (two secrets) gave the same key")
	}
}

// The dns section is checked with the rest of the configuration.
func TestDNSConfig(t *testing.T) {
	c := Config{}
	c.DNS.Servers = []string{"not a server::"}
	if err := c.Validate(); err == nil {
		t.Error("a bad dns.servers entry passed Validate")
	}
	c.DNS.Servers = []string{"127.0.0.1:5353"}
	c.DNS.Transports = []string{"SCTP"}
	if err := c.Validate(); err == nil {
		t.Error("an unknown dns.transports entry passed Validate")
	}
}
