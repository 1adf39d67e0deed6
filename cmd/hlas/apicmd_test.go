package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/store"
)

func hlasAPI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"api"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAPITokenAddListDel(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := hlasAPI("token", "add", "ops", "--data", dir)
	if code != 0 {
		t.Fatalf("add: %d %s", code, errOut)
	}
	// The token alone on stdout, so that TOKEN=$(hlas api token add ...) works.
	token := strings.TrimSuffix(out, "\n")
	if strings.ContainsAny(token, " \t\n") || len(token) != 43 {
		t.Fatalf("add printed %q", out)
	}
	code, out, errOut = hlasAPI("token", "add", "--read-only", "grafana", "--data", dir)
	if code != 0 {
		t.Fatalf("add --read-only: %d %s", code, errOut)
	}
	roToken := strings.TrimSpace(out)
	if code, _, errOut := hlasAPI("token", "add", "ops", "--data", dir); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("add a taken name: %d %s", code, errOut)
	}

	// Stored hashed: the secret is nowhere in the store, its hash is.
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, store.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := st.APITokens(context.Background())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "grafana" || !ts[0].ReadOnly || ts[0].Hash != api.HashToken(roToken) ||
		ts[1].Name != "ops" || ts[1].ReadOnly || ts[1].Hash != api.HashToken(token) {
		t.Fatalf("stored %+v", ts)
	}

	code, out, _ = hlasAPI("token", "list", "--data", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[1], "grafana ") || !strings.Contains(lines[1], "read-only") ||
		!strings.HasPrefix(lines[2], "ops ") || !strings.Contains(lines[2], "read-write") || strings.Contains(out, token) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, out, _ := hlasAPI("token", "del", "grafana", "--data", dir); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("del: %d %s", code, out)
	}
	if code, _, errOut := hlasAPI("token", "del", "grafana", "--data", dir); code != 1 || !strings.Contains(errOut, "no token") {
		t.Errorf("del again: %d %s", code, errOut)
	}
	if _, out, _ := hlasAPI("token", "list", "--data", dir); strings.Contains(out, "grafana") {
		t.Errorf("still listed after del:\n%s", out)
	}
	for _, bad := range [][]string{{}, {"frob"}, {"token"}, {"token", "add"}, {"token", "frob"}, {"token", "del"}, {"token", "list", "x"}} {
		if code, _, _ := hlasAPI(append(bad, "--data", dir)...); code != 2 {
			t.Errorf("%q: exit %d, want 2", bad, code)
		}
	}
	if code, out, _ := hlasAPI("help"); code != 0 || !strings.Contains(out, "token add NAME") {
		t.Errorf("help: %d %s", code, out)
	}
}
