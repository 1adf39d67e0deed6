package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestMWISetShow(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := mwiMain(append(args, "--data", dir), &out, &out)
		return code, out.String()
	}
	if code, out := run("show", "alice@example.test"); code != 0 || !strings.Contains(out, "no messages") {
		t.Fatalf("show before set: %d %s", code, out)
	}
	if code, out := run("set", "Alice@Example.test", "--new", "2", "--old", "8", "--urgent-old", "2"); code != 0 || !strings.Contains(out, "alice@example.test: 2 new, 8 old (0/2 urgent)") {
		t.Fatalf("set: %d %s", code, out)
	}
	if code, out := run("show", "alice@example.test"); code != 0 || !strings.Contains(out, "2 new, 8 old (0/2 urgent)") {
		t.Fatalf("show: %d %s", code, out)
	}
	for _, bad := range [][]string{{"set", "alice"}, {"set", "a@b", "--new", "-1"}, {"set", "a@b", "--new", "1", "--urgent-new", "2"}, {"frob", "a@b"}} {
		if code, out := run(bad...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", bad, code, out)
		}
	}
}
