package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hlas-voip/hlas/store"
)

const presenceUsage = `usage: hlas presence <command> [PRESENTITY [WATCHER]] [flags]

Who may watch a user's presence and busy lamp (RFC 3857 authorization).
Without a rule, users of the presentity's own domain may and others wait
pending. Works while the server runs: it decides the subscriptions again
within a second (a blocked watcher's subscription ends).

commands:
  allow PRESENTITY WATCHER    let WATCHER (user@domain, or *@domain) watch
  block PRESENTITY WATCHER    refuse WATCHER (its subscriptions end)
  del PRESENTITY WATCHER      remove the rule
  list [PRESENTITY]           the rules

flags (every command):
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

// presenceMain runs `hlas presence`.
func presenceMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, presenceUsage)
		return 2
	}
	cmd := args[0]
	want := map[string][2]int{"allow": {2, 2}, "block": {2, 2}, "del": {2, 2}, "list": {0, 1}}
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		fmt.Fprint(stdout, presenceUsage)
		return 0
	}
	n, ok := want[cmd]
	if !ok {
		fmt.Fprintf(stderr, "hlas presence: unknown command %q\n%s", cmd, presenceUsage)
		return 2
	}
	fs := flag.NewFlagSet("hlas presence "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, presenceUsage) }
	sf := addStoreFlags(fs)
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		fmt.Fprintf(stderr, "hlas presence %s: wrong number of arguments\n%s", cmd, presenceUsage)
		return 2
	}
	for i := range pos {
		pos[i] = strings.ToLower(pos[i])
		if u, d, ok := strings.Cut(pos[i], "@"); !ok || u == "" || d == "" || (u == "*" && i == 0) {
			fmt.Fprintf(stderr, "hlas presence %s: %q: want user@domain (a watcher may be *@domain)\n", cmd, pos[i])
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas presence:", err)
		return 1
	}
	defer st.Close()
	switch cmd {
	case "allow", "block":
		err = st.PutPresenceRule(ctx, store.PresenceRule{Presentity: pos[0], Watcher: pos[1], Action: cmd})
		if err == nil {
			fmt.Fprintf(stdout, "%s: %s %s\n", pos[0], cmd, pos[1])
		}
	case "del":
		err = st.DeletePresenceRule(ctx, pos[0], pos[1])
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%s has no rule about %s", pos[0], pos[1])
		}
	case "list":
		p := ""
		if len(pos) == 1 {
			p = pos[0]
		}
		var rules []store.PresenceRule
		if rules, err = st.PresenceRules(ctx, p); err == nil {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRESENTITY\tWATCHER\tRULE")
			for _, r := range rules {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Presentity, r.Watcher, r.Action)
			}
			err = tw.Flush()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "hlas presence %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
