package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/store"
)

// hlasUser runs `hlas user ...` in-process.
func hlasUser(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := userMain(args, strings.NewReader(stdin), &out, &out)
	return code, out.String()
}

func TestUserAddListPasswdDel(t *testing.T) {
	dir := t.TempDir()
	if code, out := hlasUser(t, "", "add", "alice@Example.TEST", "--password", "secret", "--data", dir); code != 0 || !strings.Contains(out, "added alice@example.test") {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, out := hlasUser(t, "hunter2\n", "add", "--data", dir, "bob@example.test"); code != 0 {
		t.Fatalf("add with the password on stdin: %d %s", code, out)
	}
	if code, _ := hlasUser(t, "", "add", "alice@example.test", "--password", "x", "--data", dir); code != 1 {
		t.Fatalf("adding an existing user: exit %d, want 1", code)
	}
	if code, _ := hlasUser(t, "", "add", "alice", "--password", "x", "--data", dir); code != 1 {
		t.Fatalf("an AOR without a domain: exit %d, want 1", code)
	}
	if code, _ := hlasUser(t, "", "add", "carol@example.test", "--data", dir); code != 1 {
		t.Fatalf("no password at all: exit %d, want 1", code)
	}
	code, out := hlasUser(t, "", "list", "--data", dir)
	if code != 0 || !strings.Contains(out, "alice@example.test") || !strings.Contains(out, "bob@example.test") || strings.Contains(out, "secret") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, out := hlasUser(t, "", "passwd", "bob@example.test", "--password", "new", "--data", dir); code != 0 {
		t.Fatalf("passwd: %d %s", code, out)
	}
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.User(context.Background(), "bob", "example.test")
	st.Close()
	if err != nil || u != withTimes(auth.NewUser("bob", "example.test", "new"), u) {
		t.Fatalf("bob after passwd: %+v, %v", u, err)
	}
	if code, _ := hlasUser(t, "", "del", "bob@example.test", "--data", dir); code != 0 {
		t.Fatal("del failed")
	}
	if code, _ := hlasUser(t, "", "del", "bob@example.test", "--data", dir); code != 1 {
		t.Fatal("deleting a missing user succeeded")
	}
	if code, _ := hlasUser(t, "", "frob"); code != 2 {
		t.Fatal("unknown subcommand accepted")
	}
}

func withTimes(u, from store.User) store.User {
	u.Created, u.Updated = from.Created, from.Updated
	return u
}

// TestUserImport imports 10000 users in one transaction, "in seconds".
func TestUserImport(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("user,password\n# a comment\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "u%05d,pw%05d\n", i, i)
	}
	b.WriteString("u00001@other.test,\"pw, with comma\"\n")
	file := filepath.Join(t.TempDir(), "users.csv")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := hlasUser(t, "", "import", file, "--data", dir); code != 1 || !strings.Contains(out, "no domain") {
		t.Fatalf("bare user names without --domain: %d %s", code, out)
	}
	start := time.Now()
	code, out := hlasUser(t, "", "import", file, "--domain", "bulk.test", "--data", dir)
	if code != 0 || !strings.Contains(out, "imported 10001 users") {
		t.Fatalf("import: %d %s", code, out)
	}
	t.Logf("%s (%v)", strings.TrimSpace(out), time.Since(start))
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if us, _ := st.ListUsers(context.Background(), "bulk.test"); len(us) != 10000 {
		t.Fatalf("%d users in bulk.test", len(us))
	}
	u, err := st.User(context.Background(), "u00001", "other.test")
	if err != nil || u.HA1MD5 != auth.NewUser("u00001", "other.test", "pw, with comma").HA1MD5 {
		t.Fatalf("quoted password: %+v %v", u, err)
	}
}

func TestRegList(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = st.WriteBindings(context.Background(), []store.Binding{
		{AOR: "alice@example.test", ID: "1", Contact: "<sip:alice@192.0.2.1:5060>", Q: 1000, Expires: now.Add(time.Hour), Source: "192.0.2.1:5060", Transport: "UDP", UserAgent: "phone/1", Updated: now},
		{AOR: "bob@example.test", ID: "2", Contact: "<sip:bob@192.0.2.2>", Q: 1000, Expires: now.Add(-time.Second), Updated: now},
	}, nil)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"reg", "list", "--data", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	if !strings.Contains(text, "<sip:alice@192.0.2.1:5060>") || !strings.Contains(text, "phone/1") || strings.Contains(text, "bob") {
		t.Fatalf("reg list:\n%s", text)
	}
	out.Reset()
	if code := run([]string{"reg", "list", "bob@example.test", "--data", dir}, &out, &errb); code != 0 || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("reg list bob: %d\n%s", code, out.String())
	}
}

func TestUserConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(cfg, []byte("data: "+dir+"\ndomain: [example.test]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := hlasUser(t, "", "add", "zed@example.test", "--password", "p", "--config", cfg); code != 0 {
		t.Fatalf("add with --config: %d %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, store.SQLiteFile)); err != nil {
		t.Fatalf("the config's data directory was not used: %v", err)
	}
}
