package main

import (
	"bytes"
	"strings"
	"testing"
)

func hlasBan(args ...string) (int, string) {
	var out bytes.Buffer
	code := banMain(args, &out, &out)
	return code, out.String()
}

func TestBanAddListDel(t *testing.T) {
	dir := t.TempDir()
	if code, out := hlasBan("add", "192.0.2.7", "--reason", "svcrack seen", "--for", "1h", "--data", dir); code != 0 || !strings.Contains(out, "banned 192.0.2.7/32 until ") {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, out := hlasBan("add", "--data", dir, "2001:db8:1:2:3::9/64"); code != 0 || !strings.Contains(out, "banned 2001:db8:1:2::/64 until deleted") {
		t.Fatalf("add a prefix: %d %s", code, out)
	}
	code, out := hlasBan("list", "--data", dir)
	if code != 0 {
		t.Fatalf("list: %d %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "192.0.2.7/32 ") || !strings.Contains(lines[1], "svcrack seen") ||
		!strings.Contains(lines[1], "operator") || !strings.HasPrefix(lines[2], "2001:db8:1:2::/64 ") || !strings.Contains(lines[2], "never") {
		t.Fatalf("list:\n%s", out)
	}
	if code, out := hlasBan("del", "192.0.2.7", "--data", dir); code != 0 || !strings.Contains(out, "lifted") {
		t.Fatalf("del: %d %s", code, out)
	}
	if code, out := hlasBan("del", "192.0.2.7", "--data", dir); code != 1 || !strings.Contains(out, "not banned") {
		t.Fatalf("del again: %d %s", code, out)
	}
	if _, out := hlasBan("list", "--data", dir); strings.Contains(out, "192.0.2.7") {
		t.Fatalf("still listed after del:\n%s", out)
	}
	for _, bad := range [][]string{{"add", "not-an-ip"}, {"add", "10.0.0.1/33"}, {"add"}, {"frob"}, {"add", "10.0.0.1", "--for", "-1s"}} {
		if code, out := hlasBan(append(bad, "--data", dir)...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", bad, code, out)
		}
	}
}
