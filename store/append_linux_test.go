//go:build linux

package store

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestAppendFile: the raw append lands at the end of the file, and a
// full disk (/dev/full) or a descriptor not open for writing is an error
// naming the file, so the journal cuts off what it wrote.
func TestAppendFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, s := range []string{"first ", "second"} {
		if n, err := appendFile(f, []byte(s)); err != nil || n != len(s) {
			t.Fatalf("appendFile(%q) = %d, %v", s, n, err)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != "first second" {
		t.Fatalf("file holds %q", got)
	}

	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("no /dev/full to fill: %v", err)
	}
	defer full.Close()
	if _, err := appendFile(full, []byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append to a full device: %v, want ENOSPC", err)
	}

	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var pe *os.PathError
	if _, err := appendFile(ro, []byte("x")); !errors.As(err, &pe) || pe.Path != path {
		t.Fatalf("append to a read-only descriptor: %v, want an error naming %s", err, path)
	}
}
