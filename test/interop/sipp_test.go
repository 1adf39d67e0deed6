//go:build interop

package interop

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// sippCalls is how many OPTIONS transactions each sipp run makes.
	sippCalls = 50
	// sippTimeout bounds one sipp run from the outside; sipp's own -timeout
	// is shorter so that it normally reports the failure itself.
	sippTimeout = 60 * time.Second
)

// TestSippOPTIONS lets sipp (the sip-tester package) ping the server with
// testdata/options.xml: sippCalls OPTIONS at 50/s, at most 10 at a time,
// every one of which must get its 200 OK.
func TestSippOPTIONS(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name      string
		target    string
		localIP   string
		transport string // sipp -t mode
	}{
		{"udp4", srv.UDP4, "127.0.0.1", "u1"},
		{"tcp4", srv.TCP4, "127.0.0.1", "t1"},
		{"udp6", srv.UDP6, "::1", "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.target == "" {
				t.Skip("no IPv6 loopback on this host")
			}
			runSippScenario(t, "options.xml", tt.target, tt.localIP, tt.transport, sippCalls)
		})
	}
}

// runSippScenario runs the testdata scenario against target as a UAC from
// localIP and requires sipp to exit 0 with every call successful.
func runSippScenario(t *testing.T, scenario, target, localIP, transport string, calls int) {
	t.Helper()
	scenarioPath, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	// sipp binds 5060 when no -p is given and it is free; pick a port so
	// that runs cannot collide with each other or with the torture test.
	localPort, err := freePort(localIP, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	errorFile := filepath.Join(dir, "errors.log")
	statFile := filepath.Join(dir, "stat.csv")
	args := []string{
		"-sf", scenarioPath,
		"-t", transport,
		"-i", localIP,
		"-p", strconv.Itoa(localPort),
		"-m", strconv.Itoa(calls),
		"-r", "50",
		"-l", "10",
		"-timeout", "20s", "-timeout_error",
		"-trace_err", "-error_file", errorFile,
		"-trace_stat", "-stf", statFile,
		"-nostdin",
		target,
	}
	ctx, cancel := context.WithTimeout(context.Background(), sippTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", args...)
	cmd.Dir = dir // sipp drops its default log files in the working directory
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()

	stats, statErr := readSippStats(statFile)
	ok := runErr == nil && statErr == nil &&
		stats["SuccessfulCall(C)"] == strconv.Itoa(calls) && stats["FailedCall(C)"] == "0"
	if ok {
		return
	}
	t.Errorf("sipp %s: exit %v; %d calls wanted, successful=%s failed=%s (stats: %v)",
		strings.Join(args, " "), runErr, calls, stats["SuccessfulCall(C)"], stats["FailedCall(C)"], statErr)
	if ctx.Err() != nil {
		t.Errorf("sipp did not finish within %v", sippTimeout)
	}
	t.Logf("sipp output (tail):\n%s", tail(out.String(), 6000))
	if errs, err := os.ReadFile(errorFile); err == nil {
		t.Logf("sipp unexpected messages (%s):\n%s", errorFile, tail(string(errs), 8000))
	}
}

// readSippStats returns the last row of a sipp -trace_stat file, keyed by
// column name (such as "SuccessfulCall(C)", the cumulative count).
func readSippStats(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	header, err := r.Read()
	if err != nil {
		return nil, err
	}
	var last []string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		last = rec
	}
	if last == nil {
		return nil, errors.New("sipp wrote no statistics row")
	}
	stats := make(map[string]string, len(header))
	for i, name := range header {
		if i < len(last) {
			stats[name] = strings.TrimSpace(last[i])
		}
	}
	return stats, nil
}

// tail returns at most n bytes from the end of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}
