package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		code       int
		want       []string // in stdout for 0, in stderr otherwise
	}{
		{"good file", "listen: [\"udp:127.0.0.1:5060\"]\ndomain: [example.test]\nrouting:\n  rules:\n    - { prefix: \"+\", action: reject, code: 403 }\n",
			0, []string{"ok"}},
		{"unknown key named with its line", "domain: [example.test]\nrouting:\n  rulez: []\n",
			1, []string{"rulez", "line 3"}},
		{"bad value named by Validate", "log_level: loud\n", 1, []string{"log_level", "loud"}},
		{"bad nested value named by Validate", "routing:\n  rules:\n    - { action: reject, code: 200 }\n",
			1, []string{"routing.rules[0].code"}},
		{"value of the wrong type: the line's key is shown", "domain: [example.test]\nmax_conns: abc\n",
			1, []string{"line 2", "max_conns: abc"}},
		{"empty file", "", 1, []string{"empty"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "c"+string(rune('a'+i))+".yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := run([]string{"config", "check", file}, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tc.code, out.String(), errb.String())
			}
			got := out.String()
			if tc.code != 0 {
				got = errb.String()
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output %q does not contain %q", got, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		var out, errb bytes.Buffer
		if code := run([]string{"config", "check", filepath.Join(dir, "nope.yaml")}, &out, &errb); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
	})
	t.Run("usage", func(t *testing.T) {
		var out, errb bytes.Buffer
		if code := run([]string{"config"}, &out, &errb); code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		if code := run([]string{"config", "check"}, &out, &errb); code != 2 {
			t.Errorf("check without a file: exit %d, want 2", code)
		}
	})
}
