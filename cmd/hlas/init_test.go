package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip/resolve"
)

func loadConfig(t *testing.T, path string) server.Config {
	t.Helper()
	var cfg server.Config
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

// uncommentAll turns every setting commented out in a starter config
// ("#key: v", or "#  key: v" nested) into a setting, leaving the
// "# prose" lines, and writes the result beside it.
func uncommentAll(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	n := 0
	for i, l := range lines {
		if len(l) > 1 && l[0] == '#' && (l[1] != ' ' || strings.HasPrefix(l, "#  ")) {
			lines[i] = l[1:]
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no settings commented out in:\n%s", data)
	}
	out := filepath.Join(t.TempDir(), "all.yaml")
	if err := os.WriteFile(out, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInitWritesAValidCommentedConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	var out, errb bytes.Buffer
	if code := run([]string{"init", "--domain", "example.test", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	file := filepath.Join(dir, "hlas.yaml")
	if s := out.String(); !strings.Contains(s, "wrote "+file+"\n") || !strings.Contains(s, "hlas serve --config "+file+"\n") {
		t.Errorf("output does not say what was written and how to start:\n%s", s)
	}
	for _, f := range []string{"hlas.crt", "hlas.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written without --tls", f)
		}
	}
	cfg := loadConfig(t, file)
	if !slices.Equal(cfg.Domains, []string{"example.test"}) || cfg.DataDir != filepath.Join(dir, "hlas-data") ||
		!slices.Equal(cfg.Listen, []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"}) || cfg.TLSCert != "" {
		t.Errorf("config %+v", cfg)
	}
	data, _ := os.ReadFile(file)
	for _, section := range []string{"#websocket:", "#media:", "#api:", "#capture:", "#tls_cert:", "#metrics_listen:"} {
		if !strings.Contains(string(data), "\n"+section) {
			t.Errorf("no %q section in:\n%s", section, data)
		}
	}
	// Every setting shown commented out is valid too.
	all := loadConfig(t, uncommentAll(t, file))
	if len(all.Listen) != 5 || all.TLSCert != filepath.Join(dir, "hlas.crt") || all.WebSocket.PingInterval == 0 ||
		all.Media.PortMin != 30000 || all.API.Listen == "" || all.Capture.HEP == "" || all.MetricsListen == "" || all.Store == "" {
		t.Errorf("uncommented config %+v", all)
	}
}

func TestInitTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"init", "--tls", "--wss", "--hostname", "sip.example.test", "--domain", "example.test", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	certFile, keyFile := filepath.Join(dir, "hlas.crt"), filepath.Join(dir, "hlas.key")
	for _, f := range []string{certFile, keyFile} {
		if !strings.Contains(out.String(), "wrote "+f+" (") {
			t.Errorf("output does not name %s:\n%s", f, out.String())
		}
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode())
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if !slices.Contains(cert.DNSNames, "sip.example.test") {
		t.Errorf("DNS names %v", cert.DNSNames)
	}
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			t.Errorf("no %s in %v", ip, cert.IPAddresses)
		}
	}
	cfg := loadConfig(t, filepath.Join(dir, "hlas.yaml"))
	if cfg.TLSCert != certFile || cfg.TLSKey != keyFile ||
		!slices.Contains(cfg.Listen, "tls:0.0.0.0:5061") || !slices.Contains(cfg.Listen, "wss:0.0.0.0:8443") {
		t.Errorf("config %+v", cfg)
	}
	loadConfig(t, uncommentAll(t, filepath.Join(dir, "hlas.yaml")))

	// The server serves the pair, and a client trusting the certificate
	// accepts it for the host name and for 127.0.0.1.
	cfg.Listen = []string{"tls:127.0.0.1:0"}
	cfg.DataDir = t.TempDir()
	cfg.DNS = resolve.Config{Servers: []string{"127.0.0.1:1"}, HostsFile: resolve.HostsNone}
	cfg.LogLevel = "error"
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, name := range []string{"sip.example.test", "127.0.0.1"} {
		c, err := tls.Dial("tcp", srv.Addrs()[0].Addr.String(), &tls.Config{RootCAs: pool, ServerName: name})
		if err != nil {
			t.Errorf("handshake for %s: %v", name, err)
			continue
		}
		c.Close()
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	file, keyFile := filepath.Join(dir, "hlas.yaml"), filepath.Join(dir, "hlas.key")
	if err := os.WriteFile(keyFile, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"init", "--tls", dir}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), keyFile+" already exists") || !strings.Contains(errb.String(), "--force") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("hlas.yaml written although the key file exists")
	}
	if data, _ := os.ReadFile(keyFile); string(data) != "mine" {
		t.Error("existing key overwritten without --force")
	}
	// Without --tls the key is none of init's business.
	errb.Reset()
	if code := run([]string{"init", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"init", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), file+" already exists") {
		t.Fatalf("second init: exit %d: %s", code, errb.String())
	}
	if code := run([]string{"init", "--tls", "--force", dir}, &out, &errb); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, errb.String())
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("overwritten key file: %v, mode %v; want 0600", err, st.Mode())
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "hlas.crt"), keyFile); err != nil {
		t.Fatal(err)
	}
	loadConfig(t, file)
}

func TestInitUsage(t *testing.T) {
	for _, args := range [][]string{
		{"init", "a", "b"},
		{"init", "--domain", "bad domain"},
		{"init", "--bogus"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
