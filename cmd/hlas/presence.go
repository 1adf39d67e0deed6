package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/hlas-voip/hlas/store"
)

const presenceUsage = `usage: hlas presence <command> [PRESENTITY [WATCHER]] [flags]

Who may watch a user's presence and busy lamp (RFC 3857 authorization).
Without a rule, users of the presentity's own domain may and others wait
pending. Works while the server runs: it decides the subscriptions again
within a second (a blocked watcher's subscription ends).

commands:
  allow PRESENTITY WATCHER    let WATCHER (user@domain, *@domain or *) watch
  block PRESENTITY WATCHER    refuse WATCHER (its subscriptions end)
  confirm PRESENTITY WATCHER  keep WATCHER pending (the presentity decides
                              later; it sees the watcher in presence.winfo)
  polite-block PRESENTITY WATCHER
                              WATCHER's subscription is accepted, and shows
                              the presentity offline
  del PRESENTITY WATCHER      remove the rule
  list [PRESENTITY]           the rules

flags (every command):
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

// presenceMain runs `hlas presence`.
func presenceMain(args []string, stdout, stderr io.Writer) int {
	return storeCommand{
		name: "presence", usage: presenceUsage,
		args: map[string][2]int{"allow": {2, 2}, "block": {2, 2}, "confirm": {2, 2}, "polite-block": {2, 2}, "del": {2, 2}, "list": {0, 1}},
		check: func(cmd string, pos []string) error {
			for i := range pos {
				pos[i] = strings.ToLower(pos[i])
				if i == 1 && pos[i] == "*" {
					continue
				}
				if u, d, ok := strings.Cut(pos[i], "@"); !ok || u == "" || d == "" || (u == "*" && i == 0) {
					return fmt.Errorf("%q: want user@domain (a watcher may be *@domain or *)", pos[i])
				}
			}
			return nil
		},
		run: func(ctx context.Context, st store.Store, cmd string, pos []string, stdout io.Writer) error {
			switch cmd {
			case "allow", "block", "confirm", "polite-block":
				if err := st.PutPresenceRule(ctx, store.PresenceRule{Presentity: pos[0], Watcher: pos[1], Action: cmd}); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: %s %s\n", pos[0], cmd, pos[1])
			case "del":
				err := st.DeletePresenceRule(ctx, pos[0], pos[1])
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%s has no rule about %s", pos[0], pos[1])
				}
				return err
			case "list":
				p := ""
				if len(pos) == 1 {
					p = pos[0]
				}
				rules, err := st.PresenceRules(ctx, p)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PRESENTITY\tWATCHER\tRULE")
				for _, r := range rules {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Presentity, r.Watcher, r.Action)
				}
				return tw.Flush()
			}
			return nil
		},
	}.main(args, stdout, stderr)
}
