package registrar

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// OnChange feeds the registration event package (RFC 3680): it is told
// every change of an AOR's bindings, and nothing for a fetch.
func TestOnChange(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	f := newFixture(t, nil, func(_ *Config, env *Env) {
		env.OnChange = func(aor string) { mu.Lock(); seen = append(seen, aor); mu.Unlock() }
	})
	got := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(seen) }
	if res := f.send(t, reg{contacts: []string{"<sip:alice@198.51.100.1>;expires=60"}}, 1); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	if s := got(); !slices.Equal(s, []string{"alice@example.test"}) {
		t.Fatalf("after a registration: %q", s)
	}
	if res := f.send(t, reg{}, 2); res.StatusCode != 200 { // a fetch: no Contact
		t.Fatal(res.StatusCode)
	}
	if s := got(); len(s) != 1 {
		t.Fatalf("a fetch was reported: %q", s)
	}
	if res := f.send(t, reg{contacts: []string{"<sip:alice@198.51.100.1>;expires=60"}}, 3); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	if s := got(); len(s) != 2 {
		t.Fatalf("a refresh was not reported: %q", s)
	}
	f.clock.Add(61 * time.Second)
	f.r.loc.expire(f.clock.Now(), nil) // the wheel without the hook: nothing
	if s := got(); len(s) != 2 {
		t.Fatalf("expire without a list reported: %q", s)
	}
	// The ticker's path: re-register, let it lapse, turn the wheel as tick does.
	if res := f.send(t, reg{contacts: []string{"<sip:alice@198.51.100.1>;expires=60"}}, 4); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	f.clock.Add(61 * time.Second)
	var aors []string
	if n := f.r.loc.expire(f.clock.Now(), &aors); n != 1 || !slices.Equal(aors, []string{"alice@example.test"}) {
		t.Fatalf("expire: %d, %q", n, aors)
	}
}
