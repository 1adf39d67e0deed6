package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip/resolve"
)

// registrarServer starts an in-process hlas whose registrar grants
// expiries down to one second, and returns its UDP address and data
// directory.
func registrarServer(t *testing.T) (addr, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	cfg := server.Config{
		Listen:    []string{"udp:127.0.0.1:0"},
		Domains:   []string{"example.test"},
		DataDir:   dataDir,
		Registrar: registrar.Config{MinExpires: 1},
		Auth:      auth.Config{OpenDomains: []string{"*"}},
		DNS:       resolve.Config{Servers: []string{"127.0.0.1:1"}, HostsFile: resolve.HostsNone},
		LogLevel:  "error",
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Addrs()[0].Addr.String(), dataDir
}

// bindings lists the registrations the server's store holds for alice,
// as `hlas reg list` prints them.
func bindings(t *testing.T, dataDir string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run([]string{"reg", "list", "--data", dataDir, "alice@example.test"}, &out, &errb); code != 0 {
		t.Fatalf("reg list: exit %d: %s", code, errb.String())
	}
	return out.String()
}

func waitOutput(t *testing.T, out *syncBuffer, cond func(string) bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond(out.String()) {
			return
		}
	}
	t.Fatalf("no %s in:\n%s", what, out.String())
}

// hlas ua register stays: the UA refreshes the binding before it expires
// and removes it (Expires: 0) when stopped.
func TestUARegisterStaysRefreshesAndUnregisters(t *testing.T) {
	addr, dataDir := registrarServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- uaMainContext(ctx, []string{"register", "--server", addr, "--user", "alice@example.test", "--expires", "2s", "--t1", "50ms"}, &out, &errb)
	}()
	waitOutput(t, &out, func(s string) bool { return strings.Contains(s, "staying registered, refreshing every 1s") }, "stay notice")
	if b := bindings(t, dataDir); !strings.Contains(b, "alice@example.test") {
		t.Fatalf("no binding after registering:\n%s", b)
	}
	// The first response and two refreshes: the binding outlived its
	// first expiry.
	waitOutput(t, &out, func(s string) bool { return strings.Count(s, "<- 200 OK\n") >= 3 }, "two refreshes")
	if b := bindings(t, dataDir); !strings.Contains(b, "alice@example.test") {
		t.Fatalf("binding lost while refreshing:\n%s", b)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("register did not stop when cancelled")
	}
	s := out.String()
	i := strings.Index(s, "-> REGISTER sip:alice@example.test (expires 0)\n")
	if i < 0 || !strings.Contains(s[i:], "<- 200 OK\n") {
		t.Fatalf("no unregistration answered 200:\n%s", s)
	}
	if b := bindings(t, dataDir); strings.Contains(b, "alice@example.test") {
		t.Fatalf("binding left after unregistering:\n%s", b)
	}
	if strings.Contains(s, "left behind") {
		t.Errorf("a registration that unregistered warned of a binding left behind:\n%s", s)
	}
}

// --once exits at once and says what it leaves at the registrar.
func TestUARegisterOnceSaysWhatItLeaves(t *testing.T) {
	addr, dataDir := registrarServer(t)
	var out, errb bytes.Buffer
	code := run([]string{"ua", "register", "--once", "--server", addr, "--user", "alice@example.test", "--expires", "30s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	s := out.String()
	if !strings.Contains(s, "left behind: the registrar sends calls for sip:alice@example.test to sip:alice@127.0.0.1:") ||
		!strings.Contains(s, " for 30s (until ") || !strings.Contains(s, "nothing listens there once this exits") {
		t.Errorf("no plain warning of the binding left behind:\n%s", s)
	}
	if strings.Contains(s, "(expires 0)") {
		t.Errorf("--once unregistered:\n%s", s)
	}
	if b := bindings(t, dataDir); !strings.Contains(b, "alice@example.test") {
		t.Errorf("--once left no binding, yet said it did:\n%s", b)
	}
	out.Reset()
	if code := run([]string{"ua", "register", "--once", "--duration", "1s", "--server", addr}, &out, &errb); code != 2 {
		t.Errorf("--once with --duration: exit %d, want 2", code)
	}
}
