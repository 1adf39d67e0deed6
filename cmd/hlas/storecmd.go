package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// storeCommand is the frame shared by the commands that change the store
// while the server runs (ban, mwi, presence): their usage, sub-commands
// with a number of arguments each, flags anywhere on the line, and the
// store the --data or --config flags name.
type storeCommand struct {
	name  string            // "ban"
	usage string            // printed on -h and on errors
	args  map[string][2]int // sub-command → fewest and most arguments
	// flags adds the command's own flags; check refuses bad arguments
	// (exit 2) before the store is opened; run does the work (exit 1 on
	// an error).
	flags func(fs *flag.FlagSet)
	check func(cmd string, pos []string) error
	run   func(ctx context.Context, st store.Store, cmd string, pos []string, stdout io.Writer) error
}

func (c storeCommand) main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, c.usage)
		return 2
	}
	cmd := args[0]
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		fmt.Fprint(stdout, c.usage)
		return 0
	}
	n, ok := c.args[cmd]
	if !ok {
		fmt.Fprintf(stderr, "hlas %s: unknown command %q\n%s", c.name, cmd, c.usage)
		return 2
	}
	fs := flag.NewFlagSet("hlas "+c.name+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, c.usage) }
	sf := addStoreFlags(fs)
	if c.flags != nil {
		c.flags(fs)
	}
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		fmt.Fprintf(stderr, "hlas %s %s: wrong number of arguments\n%s", c.name, cmd, c.usage)
		return 2
	}
	if c.check != nil {
		if err := c.check(cmd, pos); err != nil {
			fmt.Fprintf(stderr, "hlas %s %s: %v\n", c.name, cmd, err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "hlas %s: %v\n", c.name, err)
		return 1
	}
	defer st.Close()
	if err := c.run(ctx, st, cmd, pos, stdout); err != nil {
		fmt.Fprintf(stderr, "hlas %s %s: %v\n", c.name, cmd, err)
		return 1
	}
	return 0
}
