//go:build unix

package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/server"
)

// lockedBuffer is a log sink for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// SIGHUP re-reads the file with the same flags over it: the flags still
// win, the file's live keys apply, the others are reported, and a broken
// file keeps the running configuration.
func TestReloadOnHangup(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hlas.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("listen: [\"udp:127.0.0.1:0\"]\nlog_level: info\ndns: { servers: [127.0.0.1:1], hosts_file: none }\n")
	args := []string{"--config", file, "--data", filepath.Join(dir, "data"), "--listen", "udp:127.0.0.1:0"}
	cfg, err := serveConfig(args, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetLogLevelVar(level)
	stop := reloadOnHangup(context.Background(), srv, args, log)
	defer stop()

	waitFor := func(line string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if strings.Contains(out.String(), line) {
				return
			}
		}
		t.Fatalf("no %q in the log:\n%s", line, out.String())
	}
	// The file's listen changes too, but the --listen flag overrides it.
	write("listen: [\"tcp:127.0.0.1:0\"]\nlog_level: debug\nmax_conns: 77\ndns: { servers: [127.0.0.1:1], hosts_file: none }\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("config reload done")
	logs := out.String()
	for _, want := range []string{
		`level=INFO msg="config reloaded" feature=server key=log_level old=info new=debug`,
		`level=WARN msg="config change needs a restart" feature=server key=max_conns old=10000 new=77`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "key=listen") {
		t.Errorf("the --listen flag did not override the file on reload:\n%s", logs)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %v, want debug", level.Level())
	}

	write("log_level: loud\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(`level=ERROR msg="config reload failed, the running configuration is kept"`)
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %v after a broken file, want debug still", level.Level())
	}
}
