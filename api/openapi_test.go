package api

import (
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// openAPIDoc is the part of an OpenAPI 3 document the test checks.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Info    struct {
		Title   string `json:"title"`
		Version string `json:"version"`
	} `json:"info"`
	Security []map[string][]string `json:"security"`
	Paths    map[string]map[string]json.RawMessage
	Comps    struct {
		SecuritySchemes map[string]struct {
			Type   string `json:"type"`
			Scheme string `json:"scheme"`
		} `json:"securitySchemes"`
		Schemas   map[string]json.RawMessage `json:"schemas"`
		Responses map[string]json.RawMessage `json:"responses"`
	} `json:"components"`
}

type operation struct {
	OperationID string                     `json:"operationId"`
	Responses   map[string]json.RawMessage `json:"responses"`
	Security    *[]map[string][]string     `json:"security"`
	Parameters  []parameter                `json:"parameters"`
}

type parameter struct {
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// TestOpenAPIMatchesRoutes keeps openapi.json true: every route of the
// mux is in the document with its method, every operation of the document
// is served by the mux under that pattern, the document has the shape of
// OpenAPI 3, and only /healthz and /readyz go without a token.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPIDoc
	raw := OpenAPI()
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var top map[string]json.RawMessage
	_ = json.Unmarshal(raw, &top)
	if err := json.Unmarshal(top["paths"], &doc.Paths); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Info.Title == "" || doc.Info.Version == "" || len(doc.Paths) == 0 {
		t.Fatalf("not an OpenAPI 3 document: openapi %q info %+v, %d paths", doc.OpenAPI, doc.Info, len(doc.Paths))
	}
	if b := doc.Comps.SecuritySchemes["bearer"]; b.Type != "http" || b.Scheme != "bearer" || len(doc.Security) != 1 {
		t.Errorf("bearer security scheme %+v, security %v", b, doc.Security)
	}
	// Every $ref resolves.
	for _, m := range regexp.MustCompile(`"\$ref": "#/components/(schemas|responses)/([A-Za-z]+)"`).FindAllStringSubmatch(string(raw), -1) {
		set := doc.Comps.Schemas
		if m[1] == "responses" {
			set = doc.Comps.Responses
		}
		if _, ok := set[m[2]]; !ok {
			t.Errorf("dangling $ref %s/%s", m[1], m[2])
		}
	}

	a, _ := newTestAPI(t)
	documented := map[string]bool{} // "GET /api/v1/x/{y}"
	ids := map[string]bool{}
	wild := regexp.MustCompile(`\{([a-z]+)\}`)
	for path, item := range doc.Paths {
		var common []parameter
		if p, ok := item["parameters"]; ok {
			if err := json.Unmarshal(p, &common); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for key, rawOp := range item {
			if key == "parameters" {
				continue
			}
			if !slices.Contains(httpMethods, key) {
				t.Errorf("%s: %q is not an HTTP method", path, key)
				continue
			}
			var op operation
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			if op.OperationID == "" || ids[op.OperationID] || len(op.Responses) == 0 {
				t.Errorf("%s %s: operationId %q (unique, required), %d responses", key, path, op.OperationID, len(op.Responses))
			}
			ids[op.OperationID] = true
			// Path parameters are declared, each required.
			params := append(append([]parameter(nil), common...), op.Parameters...)
			for _, m := range wild.FindAllStringSubmatch(path, -1) {
				i := slices.IndexFunc(params, func(p parameter) bool { return p.Name == m[1] && p.In == "path" })
				if i < 0 || !params[i].Required {
					t.Errorf("%s %s: path parameter %s not declared as required", key, path, m[1])
				}
			}
			method := strings.ToUpper(key)
			// The mux serves this operation under the same pattern.
			concrete := wild.ReplaceAllString(path, "x@example.com")
			_, pattern := a.mux.Handler(httptest.NewRequest(method, concrete, nil))
			want := method + " " + path
			if rt, ok := routeOf(pattern); !ok || normal(rt.pattern) != want {
				t.Errorf("%s: served by %q", want, pattern)
			} else if open := op.Security != nil && len(*op.Security) == 0; open != rt.open {
				t.Errorf("%s: document says open=%v, the route open=%v", want, open, rt.open)
			}
			documented[want] = true
		}
	}
	for _, rt := range routes {
		if !documented[normal(rt.pattern)] {
			t.Errorf("route %s is not in openapi.json", rt.pattern)
		}
	}
}

// normal writes a mux pattern as OpenAPI does: {name...} is {name}.
func normal(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

func routeOf(pattern string) (route, bool) {
	for _, rt := range routes {
		if rt.pattern == pattern {
			return rt, true
		}
	}
	return route{}, false
}

// TestOpenAPIServed: the document is served, with a token.
func TestOpenAPIServed(t *testing.T) {
	f := newFixture(t, Config{})
	code, body, h := f.do(f.token, "GET", "/api/v1/openapi.json", "")
	if code != 200 || h.Get("Content-Type") != "application/json" || body != string(OpenAPI()) {
		t.Errorf("GET openapi.json = %d %q", code, h.Get("Content-Type"))
	}
	if code, _, _ := f.do("", "GET", "/api/v1/openapi.json", ""); code != 401 {
		t.Errorf("without a token = %d", code)
	}
}

func newTestAPI(t *testing.T) (*API, *fixture) {
	f := newFixture(t, Config{})
	return f.api, f
}
