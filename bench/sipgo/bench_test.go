// Package sipgo compares the hlas message parser with the one of
// github.com/emiago/sipgo on the same bytes. It is a separate module so that
// the main module's `go test ./...` neither builds it nor depends on sipgo.
package sipgo

import (
	"os"
	"path/filepath"
	"testing"
)

// benchDir holds the messages both parsers read; they live in the main
// module so that hlas's own benchmarks use the very same bytes.
const benchDir = "../../sip/testdata/bench"

// loadMessage reads one benchmark message and fails the benchmark if it is
// missing, so a wrong working directory cannot pass as a fast parse.
func loadMessage(b *testing.B, name string) []byte {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(benchDir, name))
	if err != nil {
		b.Fatalf("read benchmark message: %v", err)
	}
	if len(data) == 0 {
		b.Fatalf("benchmark message %s is empty", name)
	}
	return data
}
