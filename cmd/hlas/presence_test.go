package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestPresenceRulesCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := presenceMain(append(args, "--data", dir), &out, &out)
		return code, out.String()
	}
	if code, out := run("block", "Alice@Example.test", "mallory@evil.test"); code != 0 || !strings.Contains(out, "alice@example.test: block mallory@evil.test") {
		t.Fatalf("block: %d %s", code, out)
	}
	if code, out := run("allow", "alice@example.test", "*@partner.test"); code != 0 {
		t.Fatalf("allow a domain: %d %s", code, out)
	}
	code, out := run("list", "alice@example.test")
	if code != 0 || !regexp.MustCompile(`\*@partner.test +allow`).MatchString(out) || !regexp.MustCompile(`mallory@evil.test +block`).MatchString(out) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, out := run("del", "alice@example.test", "mallory@evil.test"); code != 0 {
		t.Fatalf("del: %d %s", code, out)
	}
	if code, out := run("del", "alice@example.test", "mallory@evil.test"); code != 1 || !strings.Contains(out, "no rule") {
		t.Fatalf("del again: %d %s", code, out)
	}
	for _, bad := range [][]string{{"allow", "alice@example.test"}, {"allow", "*@example.test", "bob@x"}, {"block", "alice", "bob@x"}, {"frob"}} {
		if code, out := run(bad...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", bad, code, out)
		}
	}
}
