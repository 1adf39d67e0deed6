package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"sync"
	"syscall"

	"github.com/hlas-voip/hlas/server"
)

const configUsage = `usage: hlas config check FILE

  check   load FILE as hlas serve --config does (unknown keys are errors),
          validate it, and print "ok" or what is wrong; exit 1 if wrong
`

// configMain is `hlas config`.
func configMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	switch args[0] {
	case "check":
		if len(args) != 2 {
			fmt.Fprint(stderr, configUsage)
			return 2
		}
		if err := checkConfig(args[1]); err != nil {
			fmt.Fprintln(stderr, "hlas config check:", err)
			return 1
		}
		fmt.Fprintln(stdout, "ok")
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, configUsage)
		return 0
	}
	fmt.Fprintf(stderr, "hlas config: unknown command %q\n%s", args[0], configUsage)
	return 2
}

// checkConfig loads and validates a configuration file as serve does.
func checkConfig(path string) error {
	var cfg server.Config
	if err := cfg.LoadFile(path); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("config %s: empty file", path)
		}
		return withLines(path, err)
	}
	return cfg.Validate()
}

// yamlLine finds the line numbers in yaml.v3's errors ("line 7: cannot
// unmarshal !!str `abc` into int").
var yamlLine = regexp.MustCompile(`line (\d+): `)

// withLines adds the text of the lines a YAML error names, since an error
// about a value ("cannot unmarshal") names its line but not its key.
func withLines(path string, err error) error {
	msg := err.Error()
	ms := yamlLine.FindAllStringSubmatchIndex(msg, -1)
	if len(ms) == 0 {
		return err
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return err
	}
	lines := bytes.Split(data, []byte("\n"))
	var out []byte
	last := 0
	for _, m := range ms {
		n, _ := strconv.Atoi(msg[m[2]:m[3]])
		out = append(out, msg[last:m[1]]...)
		if n >= 1 && n <= len(lines) {
			out = fmt.Appendf(out, "%q: ", bytes.TrimSpace(lines[n-1]))
		}
		last = m[1]
	}
	out = append(out, msg[last:]...)
	return errors.New(string(out))
}

// reloadOnHangup reloads the configuration on SIGHUP until ctx ends: the
// file and the flags of args, built as at start, given to srv.Reload
// (which logs what it applied and what needs a restart). A file that does
// not load or validate is logged and the running configuration kept. The
// same loader serves the reload API (Server.ReloadFromSource). The
// function returned stops it and waits for a reload under way.
func reloadOnHangup(ctx context.Context, srv *server.Server, args []string, log *slog.Logger) func() {
	srv.SetConfigLoader(func() (server.Config, error) { return serveConfig(args, io.Discard) })
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration")
				_, _ = srv.ReloadFromSource() // it logs the outcome
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}
