package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// /metrics carries the Go runtime's and the process's collectors beside
// hlas's own; the profiles are served only with debug.pprof.
func TestMetricsEndpoint(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		srv := startServer(t, Config{MetricsListen: "127.0.0.1:0", Debug: Debug{PProf: pprof}})
		base := "http://" + srv.MetricsAddr()
		code, body := httpGet(t, base+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "hlas_server_queue_length"} {
			if !strings.Contains(body, "\n"+name+" ") && !strings.Contains(body, "\n"+name+"{") {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		code, body = httpGet(t, base+"/debug/pprof/")
		if pprof && (code != 200 || !strings.Contains(body, "goroutine")) {
			t.Errorf("pprof on: /debug/pprof/ gave %d", code)
		}
		if !pprof && code != 404 {
			t.Errorf("pprof off: /debug/pprof/ gave %d, want 404", code)
		}
		if pprof {
			if code, _ := httpGet(t, base+"/debug/pprof/heap?debug=1"); code != 200 {
				t.Errorf("/debug/pprof/heap: %d", code)
			}
		}
	}
}

func TestPProfNeedsMetricsListen(t *testing.T) {
	if err := (Config{Debug: Debug{PProf: true}}).Validate(); err == nil || !strings.Contains(err.Error(), "debug.pprof") {
		t.Errorf("Validate = %v, want an error naming debug.pprof", err)
	}
}
