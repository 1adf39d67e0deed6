package xcap

import "testing"

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
		ok   bool
	}{
		{`http://xcap.example.com/xcap-root/resource-lists/users/sip:Alice@Example.com/index/~~/resource-lists/list%5b@name=%22friends%22%5d`,
			Ref{AUID: "resource-lists", User: "alice@example.com", Doc: "index", Selector: `resource-lists/list[@name="friends"]`}, true},
		{`https://h:8443/other/root/resource-lists/users/sip%3Abob%40example.com/dir/buddies`,
			Ref{AUID: "resource-lists", User: "bob@example.com", Doc: "dir/buddies"}, true},
		{`/xcap-root/rls-services/users/sip:a@b/index`, Ref{AUID: "rls-services", User: "a@b", Doc: "index"}, true},
		{`http://h/xcap-root/xcap-caps/global/index`, Ref{}, false},
		{`http://h/xcap-root/resource-lists/users/sip:a@b`, Ref{}, false},
		{`http://h/xcap-root/resource-lists/users/nobody/index`, Ref{}, false},
		{`http://h/xcap-root/resource-lists/users/sip:a@b/../index`, Ref{}, false},
		{`http://h/xcap-root/resource-lists/users/sip:a@b/index/~~/%zz`, Ref{}, false},
		{"::", Ref{}, false},
	} {
		got, ok := ParseRef(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
