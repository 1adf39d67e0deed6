//go:build linux

package plane

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The committed object is what bpf/forward.c compiles to: a change to
// the C source without go generate fails here (CI installs clang).
func TestForwardObjectUpToDate(t *testing.T) {
	for _, tool := range []string{"clang", "llvm-strip", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s here to rebuild bpf/forward.c (Debian: clang llvm gcc; CI has them)", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "forward_bpf.o")
	if b, err := exec.Command("sh", "bpf/build.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("bpf/build.sh: %v\n%s", err, b)
	}
	built, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, forwardObj) {
		t.Fatal("forward_bpf.o is not what bpf/forward.c compiles to: run go generate ./media/plane")
	}
}
