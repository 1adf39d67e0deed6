package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/xcap/resourcelists"
)

func TestListAddShowDel(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := listMain(append(args, "--data", dir), &out, &out)
		return code, out.String()
	}
	if code, out := run("add", "Alice@Example.test", "friends", "sip:bob@example.test", "Bob & co"); code != 0 ||
		!strings.Contains(out, "subscribe to sip:alice-friends@example.test") {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, out := run("add", "alice@example.test", "friends", "sip:dave@partner.test"); code != 0 || strings.Contains(out, "created") {
		t.Fatalf("second add: %d %s", code, out)
	}
	// Names are case-sensitive: Friends is another list with its own service.
	if code, out := run("add", "alice@example.test", "Friends", "--service", "sip:alice-work@example.test"); code != 0 ||
		!strings.Contains(out, "sip:alice-work@example.test") {
		t.Fatalf("add Friends: %d %s", code, out)
	}
	code, out := run("show", "alice@example.test")
	if code != 0 || !strings.Contains(out, "sip:dave@partner.test") || !strings.Contains(out, "Bob & co") ||
		!strings.Contains(out, "Friends  sip:alice-work@example.test") {
		t.Fatalf("show: %d\n%s", code, out)
	}

	// The documents are what XCAP clients read: valid, with the service
	// naming the list.
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := st.XCAPDocument(ctx, "resource-lists", "alice@example.test", "index")
	if err != nil || resourcelists.Validate(d.Body) != nil {
		t.Fatalf("resource-lists: %v %v\n%s", err, resourcelists.Validate(d.Body), d.Body)
	}
	sd, err := st.XCAPDocument(ctx, "rls-services", "alice@example.test", "index")
	if err != nil || resourcelists.ValidateServices(sd.Body) != nil {
		t.Fatalf("rls-services: %v\n%s", err, sd.Body)
	}
	svcs, _ := resourcelists.ParseServices(sd.Body)
	if len(svcs.Services) != 2 || !strings.Contains(svcs.Services[0].ResourceList, "friends") {
		t.Fatalf("services: %+v", svcs.Services)
	}
	// A subscriber's address or another user's service is refused.
	if err := st.AddUser(ctx, auth.NewUser("carol", "example.test", "pw")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if code, out := run("add", "bob@example.test", "x", "--service", "sip:carol@example.test"); code != 1 || !strings.Contains(out, "subscriber's address") {
		t.Fatalf("a user's address as service: %d %s", code, out)
	}
	if code, out := run("add", "bob@example.test", "x", "--service", "sip:alice-work@example.test"); code != 1 || !strings.Contains(out, "alice@example.test's service") {
		t.Fatalf("another's service: %d %s", code, out)
	}

	if code, out := run("del", "alice@example.test", "friends", "sip:bob@example.test"); code != 0 {
		t.Fatalf("del entry: %d %s", code, out)
	}
	if code, out := run("del", "alice@example.test", "friends", "sip:bob@example.test"); code != 1 || !strings.Contains(out, "has no") {
		t.Fatalf("del again: %d %s", code, out)
	}
	if code, out := run("del", "alice@example.test", "friends"); code != 0 {
		t.Fatalf("del list: %d %s", code, out)
	}
	code, out = run("show", "alice@example.test")
	if code != 0 || strings.Contains(out, "friends ") || strings.Contains(out, "alice-friends") || !strings.Contains(out, "Friends") {
		t.Fatalf("show after del (Friends stays):\n%s", out)
	}
	for _, bad := range [][]string{{"add", "alice", "x"}, {"add", "a@b", "bad name"}, {"add", "a@b", "l", "not a uri"}, {"show"}, {"frob", "a@b"}} {
		if code, out := run(bad...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", bad, code, out)
		}
	}
}
