package api

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// consoleFiles is the web console: a page, a
// script and a style sheet, plain files with no build step, embedded so
// the binary serves them without anything on disk.
//
//go:embed console/index.html console/app.js console/style.css
var consoleFiles embed.FS

// consolePrefix is where the console is served. It is not under /api/v1
// and not in the routes table: it is static files, not an API operation,
// so the OpenAPI document does not describe it.
const consolePrefix = "/console/"

// consoleRoute serves the console's files without a token: they hold no
// data. The page asks for a token and sends it with each API call, so
// the console can do no more than the token can. It still goes through
// wrap, for the bound on requests in flight and the metrics.
var consoleRoute = route{"GET " + consolePrefix, (*API).console, true}

// consoleCSP keeps the page to its own script, style and API: no inline
// script, nothing from elsewhere, no framing (a token is typed into it).
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (a *API) console(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.URL.Path, consolePrefix)
	if name == "" {
		name = "index.html"
	}
	// Only the files at the top of console/: no directories, no dot
	// segments (the mux has cleaned the path already; this is the second
	// lock).
	if strings.Contains(name, "/") || name != path.Clean(name) {
		return fail(http.StatusNotFound, "", "not found")
	}
	b, err := fs.ReadFile(consoleFiles, "console/"+name)
	if err != nil {
		return fail(http.StatusNotFound, "", "not found")
	}
	h := w.Header()
	h.Set("Content-Type", consoleType(name))
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// The files change with the binary; a browser asks again each time
	// rather than run a script older than the server it talks to.
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}

func consoleType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}
