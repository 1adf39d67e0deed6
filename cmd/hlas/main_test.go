package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "hlas ") {
		t.Fatalf("version output %q", out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}

func TestServeConfigFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hlas.yaml")
	yaml := "listen: [\"udp:127.0.0.1:5070\"]\ndomain: [a.example]\ndata: /var/lib/hlas\nlog_level: warn\nforce_rport: true\ndns: { servers: [192.0.2.53], timeout: 1s }\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cfg, err := serveConfig([]string{"--config", file, "--domain", "b.example,c.example", "--log-level", "debug", "--dns", "127.0.0.1:5353, [::1]", "--max-queue-delay", "250ms"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Listen, []string{"udp:127.0.0.1:5070"}) {
		t.Errorf("listen from file lost: %v", cfg.Listen)
	}
	if !reflect.DeepEqual(cfg.Domains, []string{"b.example", "c.example"}) {
		t.Errorf("domain flag did not override: %v", cfg.Domains)
	}
	if !reflect.DeepEqual(cfg.DNS.Servers, []string{"127.0.0.1:5353", "[::1]"}) || cfg.DNS.Timeout != time.Second {
		t.Errorf("dns flag did not override the servers alone: %+v", cfg.DNS)
	}
	if cfg.DataDir != "/var/lib/hlas" || cfg.LogLevel != "debug" || !cfg.ForceRPort || cfg.MaxQueueDelay != 250*time.Millisecond {
		t.Errorf("got %+v", cfg)
	}
}

func TestServeConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("lisen: [\"udp:127.0.0.1:5060\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "sctp:127.0.0.1:5060"}, "listen"},
		{[]string{"--listen", "udp:localhost"}, "listen"},
		{[]string{"--listen", "tls:127.0.0.1:5061"}, "tls_cert"},
		{[]string{"--log-level", "loud"}, "log_level"},
		{[]string{"--config", bad}, "lisen"},
		{[]string{"--max-message-size", "10"}, "max_message_size"},
		{[]string{"--dns", "not a server::"}, "servers"},
	} {
		var errb bytes.Buffer
		_, err := serveConfig(tc.args, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}
