//go:build interop

package interop

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// modulePath is the main module; the tests locate its root by it.
const modulePath = "github.com/hlas-voip/hlas"

var (
	// hlasBin is the server binary under test, built once by TestMain.
	hlasBin string
	// moduleRoot is the directory holding the main module's go.mod.
	moduleRoot string
)

// requiredTools are the peers the tests drive. They are not optional: a
// missing tool fails the run instead of skipping, so CI cannot go green
// without having talked to a real peer.
var requiredTools = []struct{ name, debianPackage string }{
	{"sipp", "sip-tester"},
	{"sipsak", "sipsak"},
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool.name); err != nil {
			fmt.Fprintf(os.Stderr, "interop: %s is required but not installed (%v);\n"+
				"  install the Debian package %q, e.g. by running `bash .ci/run`\n",
				tool.name, err, tool.debianPackage)
			return 1
		}
	}
	root, err := findModuleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: %v\n", err)
		return 1
	}
	moduleRoot = root

	if bin := os.Getenv("HLAS_INTEROP_BIN"); bin != "" {
		hlasBin = bin
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "hlas-interop-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	hlasBin = filepath.Join(tmp, "hlas")
	if err := buildServer(hlasBin); err != nil {
		fmt.Fprintf(os.Stderr, "interop: %v\n", err)
		return 1
	}
	return m.Run()
}

// buildServer compiles ./cmd/hlas into out. The binary gets the race
// detector when the tests run with -race: a race in the server then makes
// it exit non-zero, which the clean-shutdown check reports.
func buildServer(out string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/hlas")
	cmd := exec.Command("go", args...)
	cmd.Dir = moduleRoot
	start := time.Now()
	output, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(args, " "), moduleRoot, err, output)
	}
	fmt.Fprintf(os.Stderr, "interop: built hlas (race=%v) in %v\n", raceEnabled, time.Since(start).Round(time.Millisecond))
	return nil
}

// findModuleRoot walks up from the working directory (the package directory
// under go test) to the go.mod that declares modulePath.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if declaresModule(filepath.Join(dir, "go.mod"), modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod declaring module " + modulePath + " above the working directory")
		}
		dir = parent
	}
}

// declaresModule reports whether the go.mod at path has `module want`.
func declaresModule(path, want string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == want
		}
	}
	return false
}
