package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/store"
)

const banUsage = `usage: hlas ban <command> [flags]

Sources refused at the edge: the server drops every packet from a banned
address without an answer. The server's detectors (floods, scanners,
password guessing) add bans; operators add and remove them here. Works
while the server runs: it picks up changes within a second (docs/security.md).

commands:
  list                        bans in force, oldest first
  add ADDR|PREFIX [--for D] [--reason TEXT]
                              ban an address or a prefix (192.0.2.7, 2001:db8::/64)
                              for D (a Go duration: 30m, 24h; default: until deleted)
  del ADDR|PREFIX             lift a ban (the server forgets it within a second)

flags (every command):
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

// banMain runs `hlas ban`.
func banMain(args []string, stdout, stderr io.Writer) int {
	var dur time.Duration
	var reason string
	var prefix netip.Prefix
	return storeCommand{
		name: "ban", usage: banUsage,
		args: map[string][2]int{"list": {0, 0}, "add": {1, 1}, "del": {1, 1}},
		flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&dur, "for", 0, "add: how long the ban lasts (default: until deleted)")
			fs.StringVar(&reason, "reason", "", "add: why (shown by list and in the server's log)")
		},
		check: func(cmd string, pos []string) (err error) {
			if dur < 0 {
				return fmt.Errorf("--for %s: must not be negative", dur)
			}
			if len(pos) == 1 {
				prefix, err = api.ParseBanPrefix(pos[0])
			}
			return err
		},
		run: func(ctx context.Context, st store.Store, cmd string, _ []string, stdout io.Writer) error {
			now := time.Now()
			switch cmd {
			case "list":
				return listBans(ctx, st, now, stdout)
			case "add":
				b := store.Ban{Prefix: prefix, Reason: reason, Created: now, Manual: true}
				if b.Reason == "" {
					b.Reason = "added by an operator"
				}
				until := "until deleted"
				if dur > 0 {
					b.Expires = now.Add(dur)
					until = "until " + b.Expires.UTC().Format(time.RFC3339)
				}
				if err := st.PutBans(ctx, []store.Ban{b}); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "banned %s %s\n", prefix, until)
			case "del":
				err := st.DeleteBan(ctx, prefix)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%s is not banned", prefix)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "lifted the ban of %s\n", prefix)
			}
			return nil
		},
	}.main(args, stdout, stderr)
}

func listBans(ctx context.Context, st store.Store, now time.Time, out io.Writer) error {
	bans, err := st.Bans(ctx, now)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSINCE\tEXPIRES\tBY\tREASON")
	for _, b := range bans {
		exp := "never"
		if !b.Expires.IsZero() {
			exp = b.Expires.UTC().Format(time.RFC3339) + " (in " + b.Expires.Sub(now).Round(time.Second).String() + ")"
		}
		by := "server"
		if b.Manual {
			by = "operator"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Prefix, b.Created.UTC().Format(time.RFC3339), exp, by, b.Reason)
	}
	return tw.Flush()
}
