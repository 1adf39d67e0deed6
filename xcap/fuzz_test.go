package xcap

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzSelectorParse(f *testing.F) {
	for _, s := range []string{
		`resource-lists/list[@name="friends"]/entry[@uri="sip:carol@example.com"]`,
		`a/b[2]/*[1][@p:x='v']/@q:y`,
		`ruleset/rule/namespace::*`,
		`a[@b="&lt;&#x41;"]`,
	} {
		f.Add(s, `xmlns(p=urn:p)xmlns(q=urn:q^))`)
	}
	f.Fuzz(func(t *testing.T, s, q string) {
		if sel, err := parseSelector(s); err == nil {
			if len(sel.steps) == 0 || len(sel.steps) > maxSteps {
				t.Fatalf("%q: %d steps", s, len(sel.steps))
			}
			for _, st := range sel.steps {
				if st.pos < 0 || st.pos > maxPosition || (!st.any && st.name.local == "") || st.text == "" {
					t.Fatalf("%q: bad step %+v", s, st)
				}
			}
		} else if !errors.Is(err, ErrSelector) {
			t.Fatalf("%q: error %v is not ErrSelector", s, err)
		}
		if ns, err := parseBindings(q); err == nil && len(ns) > maxBindings {
			t.Fatalf("%d bindings", len(ns))
		} else if err != nil && !errors.Is(err, ErrSelector) {
			t.Fatalf("%q: error %v is not ErrSelector", q, err)
		}
	})
}

func FuzzApply(f *testing.F) {
	f.Add([]byte(friends), `resource-lists/list[@name="friends"]/entry[@uri="sip:carol@example.com"]`, []byte(`<entry uri="sip:carol@example.com"/>`), false)
	f.Add([]byte(twoLists), `resource-lists/list[1]/entry[2]`, []byte(nil), true)
	f.Add([]byte(twoLists), `resource-lists/*[1]/x:note/@x:level`, []byte(`3&amp;`), false)
	f.Add([]byte(presRules), `ruleset/rule[@id="a"]/actions/pr:sub-handling`, []byte(`<pr:sub-handling>block</pr:sub-handling>`), false)
	ns := map[string]string{"x": "urn:example:ext", "pr": prNS}
	f.Fuzz(func(t *testing.T, doc []byte, sel string, value []byte, del bool) {
		op := OpPut
		if del {
			op = OpDelete
		}
		out, err := Apply(doc, rlNS, sel, ns, op, value)
		if err != nil {
			var xe *Error
			if !errors.As(err, &xe) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrSelector) {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		// The result is a document Apply itself reads back.
		d, err := parseDoc(out)
		if err != nil {
			t.Fatalf("result does not parse: %v\n%q", err, out)
		}
		if !bytes.Equal(d.Bytes(), out) {
			t.Fatalf("result not stable")
		}
		// Idempotent: a PUT's selector selects the node, a DELETE's none.
		got, err := Select(out, rlNS, sel, ns)
		if op == OpDelete {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("after DELETE %q still selects %q (%v)", sel, got, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("after PUT %q selects nothing: %v", sel, err)
		}
		// PUT again with what was selected changes nothing.
		again, err := Apply(out, rlNS, sel, ns, OpPut, got)
		if err != nil {
			t.Fatalf("PUT of the selected node back: %v", err)
		}
		if sel2, _ := Select(again, rlNS, sel, ns); !bytes.Equal(sel2, got) {
			t.Fatalf("PUT back changed the node: %q -> %q", got, sel2)
		}
	})
}
