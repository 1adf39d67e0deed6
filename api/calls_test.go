package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCalls is a call table in a slice.
type fakeCalls struct {
	mu      sync.Mutex
	calls   []Call
	hungUp  []string
	started []NewCall
	refuse  error
}

func (f *fakeCalls) List() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

func (f *fakeCalls) Get(id string) (Call, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c.CallID == id {
			return c, true
		}
	}
	return Call{}, false
}

func (f *fakeCalls) Hangup(id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.calls {
		if c.CallID == id {
			f.calls = append(f.calls[:i:i], f.calls[i+1:]...)
			f.hungUp = append(f.hungUp, id)
			if c.State == "confirmed" {
				return HangupBye, nil
			}
			return HangupCancel, nil
		}
	}
	return "", ErrNoCall
}

func (f *fakeCalls) Originate(_ context.Context, from, to string) (Origination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return Origination{}, f.refuse
	}
	f.started = append(f.started, NewCall{From: from, To: to})
	return Origination{ID: "o1", From: from, To: to, CallID: "leg-a@hlas", State: "calling-a"}, nil
}

func TestCalls(t *testing.T) {
	f := newFixture(t, Config{})
	t0 := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	t1 := t0.Add(2 * time.Second)
	f.calls.calls = []Call{
		{CallID: "a/1@x", From: "sip:alice@example.test", To: "sip:bob@example.test", State: "confirmed", Started: t0, Answered: &t1},
		{CallID: "c2", From: "sip:carol@example.test", To: "sip:+4420123@example.test", State: "early", Started: t1, Relayed: true},
	}

	var all List[Call]
	f.must(http.StatusOK, "GET", "/api/v1/calls", "", &all)
	if len(all.Items) != 2 || all.Items[0].CallID != "a/1@x" || all.Items[0].Answered == nil || !all.Items[1].Relayed {
		t.Fatalf("calls %+v", all)
	}
	var bob List[Call]
	f.must(http.StatusOK, "GET", "/api/v1/calls?user=bob", "", &bob)
	if len(bob.Items) != 1 || bob.Items[0].CallID != "a/1@x" {
		t.Errorf("bob's calls %+v", bob)
	}
	var none List[Call]
	f.must(http.StatusOK, "GET", "/api/v1/calls?user=bob@other.test", "", &none)
	if len(none.Items) != 0 {
		t.Errorf("bob@other.test's calls %+v", none)
	}
	if code, body, _ := f.do(f.token, "GET", "/api/v1/calls?who=bob", ""); code != 400 || !strings.Contains(body, `"field": "who"`) {
		t.Errorf("unknown parameter: %d %s", code, body)
	}

	// A Call-ID with a slash and an @, percent-encoded in the path.
	path := "/api/v1/calls/" + url.PathEscape("a/1@x")
	var one Call
	f.must(http.StatusOK, "GET", path, "", &one)
	if one.From != "sip:alice@example.test" || one.State != "confirmed" {
		t.Errorf("call %+v", one)
	}
	if code, _, _ := f.do(f.roToken, "DELETE", path, ""); code != http.StatusForbidden {
		t.Errorf("read-only hang-up: %d", code)
	}
	var h HungUp
	f.must(http.StatusAccepted, "DELETE", path, "", &h)
	if h.Action != HangupBye || h.CallID != "a/1@x" {
		t.Errorf("hang-up %+v", h)
	}
	f.must(http.StatusAccepted, "DELETE", "/api/v1/calls/c2", "", &h)
	if h.Action != HangupCancel {
		t.Errorf("hang-up of a ringing call %+v", h)
	}
	if code, body, _ := f.do(f.token, "DELETE", path, ""); code != http.StatusNotFound || !strings.Contains(body, "call_id") {
		t.Errorf("second hang-up: %d %s", code, body)
	}
	if code, _, _ := f.do(f.token, "GET", "/api/v1/calls/nope", ""); code != http.StatusNotFound {
		t.Errorf("unknown call: %d", code)
	}
	if got := strings.Join(f.calls.hungUp, ","); got != "a/1@x,c2" {
		t.Errorf("hung up %q", got)
	}
}

func TestOriginate(t *testing.T) {
	f := newFixture(t, Config{})
	var o Origination
	f.must(http.StatusAccepted, "POST", "/api/v1/calls", `{"from":"alice","to":"bob@example.test"}`, &o)
	if o.ID != "o1" || o.CallID == "" || o.From != "alice" || o.To != "bob@example.test" {
		t.Errorf("origination %+v", o)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"to":"bob"}`, "from"},
		{`{"from":"alice","to":" "}`, "to"},
		{`{"from":"alice","to":"bob","ring":30}`, "ring"},
	} {
		if code, body, _ := f.do(f.token, "POST", "/api/v1/calls", tc.body); code != 400 || !strings.Contains(body, tc.field) {
			t.Errorf("%s: %d %s", tc.body, code, body)
		}
	}
	if code, _, _ := f.do(f.roToken, "POST", "/api/v1/calls", `{"from":"alice","to":"bob"}`); code != http.StatusForbidden {
		t.Errorf("read-only origination: %d", code)
	}
	f.calls.refuse = fail(http.StatusConflict, "from", "alice has no registered phone")
	if code, body, _ := f.do(f.token, "POST", "/api/v1/calls", `{"from":"alice","to":"bob"}`); code != 409 || !strings.Contains(body, "registered") {
		t.Errorf("refused: %d %s", code, body)
	}
	if len(f.calls.started) != 1 {
		t.Errorf("started %+v", f.calls.started)
	}
}

func TestCallsOff(t *testing.T) {
	f := newFixture(t, Config{})
	f.api.env.Calls = nil
	for _, m := range []string{"GET /api/v1/calls", "GET /api/v1/calls/x", "DELETE /api/v1/calls/x"} {
		method, path, _ := strings.Cut(m, " ")
		if code, _, _ := f.do(f.token, method, path, ""); code != http.StatusNotImplemented {
			t.Errorf("%s: %d", m, code)
		}
	}
}
