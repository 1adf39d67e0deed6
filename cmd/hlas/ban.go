package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

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
	if len(args) == 0 {
		fmt.Fprint(stderr, banUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "list", "add", "del":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, banUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "hlas ban: unknown command %q\n%s", cmd, banUsage)
		return 2
	}
	fs := flag.NewFlagSet("hlas ban "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, banUsage) }
	sf := addStoreFlags(fs)
	dur := fs.Duration("for", 0, "add: how long the ban lasts (default: until deleted)")
	reason := fs.String("reason", "", "add: why (shown by list and in the server's log)")
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	want := map[string]int{"list": 0, "add": 1, "del": 1}[cmd]
	if len(pos) != want {
		fmt.Fprintf(stderr, "hlas ban %s: wrong number of arguments\n%s", cmd, banUsage)
		return 2
	}
	if *dur < 0 {
		fmt.Fprintf(stderr, "hlas ban add: --for %s: must not be negative\n", *dur)
		return 2
	}
	var p netip.Prefix
	if want == 1 {
		if p, err = parseBanPrefix(pos[0]); err != nil {
			fmt.Fprintf(stderr, "hlas ban %s: %v\n", cmd, err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas ban:", err)
		return 1
	}
	defer st.Close()
	now := time.Now()
	switch cmd {
	case "list":
		err = listBans(ctx, st, now, stdout)
	case "add":
		b := store.Ban{Prefix: p, Reason: *reason, Created: now, Manual: true}
		if b.Reason == "" {
			b.Reason = "added by an operator"
		}
		if *dur > 0 {
			b.Expires = now.Add(*dur)
		}
		if err = st.PutBans(ctx, []store.Ban{b}); err == nil {
			until := "until deleted"
			if !b.Expires.IsZero() {
				until = "until " + b.Expires.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "banned %s %s\n", p, until)
		}
	case "del":
		err = st.DeleteBan(ctx, p)
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%s is not banned", p)
		} else if err == nil {
			fmt.Fprintf(stdout, "lifted the ban of %s\n", p)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "hlas ban %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// parseBanPrefix takes an address (a /32 or /128 ban) or a prefix.
func parseBanPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: want an IP address or a prefix", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: want an IP address or a prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
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
