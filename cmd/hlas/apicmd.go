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

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/store"
)

const apiUsage = `usage: hlas api token <command> [flags]

Bearer tokens of the REST API (docs/api.md). A token is shown once, when
it is made, and stored only as its SHA-256. Works while the server runs:
a new token works, and a deleted one stops working, at its next request.

commands:
  token add NAME [--read-only]   make a token; prints it alone on stdout
                                 (--read-only: GET only, writes get 403)
  token list                     names, rights and creation times
  token del NAME                 delete a token

flags (every command):
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

// apiMain runs `hlas api`.
func apiMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, apiUsage)
		return 0
	}
	if len(args) == 0 || args[0] != "token" {
		fmt.Fprint(stderr, apiUsage)
		return 2
	}
	var readOnly bool
	return storeCommand{
		name: "api token", usage: apiUsage,
		args: map[string][2]int{"add": {1, 1}, "list": {0, 0}, "del": {1, 1}},
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&readOnly, "read-only", false, "add: the token may only read")
		},
		check: func(cmd string, pos []string) error {
			if cmd == "add" && (pos[0] == "" || strings.ContainsAny(pos[0], " \t\r\n")) {
				return errors.New("a token name is one word")
			}
			return nil
		},
		run: func(ctx context.Context, st store.Store, cmd string, pos []string, stdout io.Writer) error {
			switch cmd {
			case "add":
				token, hash, err := api.NewToken()
				if err != nil {
					return err
				}
				if err := st.AddAPIToken(ctx, store.APIToken{Name: pos[0], Hash: hash, ReadOnly: readOnly}); err != nil {
					if errors.Is(err, store.ErrExists) {
						return fmt.Errorf("a token named %q exists", pos[0])
					}
					return err
				}
				fmt.Fprintln(stdout, token)
			case "list":
				ts, err := st.APITokens(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tACCESS\tCREATED")
				for _, t := range ts {
					access := "read-write"
					if t.ReadOnly {
						access = "read-only"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, access, t.Created.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			case "del":
				if err := st.DeleteAPIToken(ctx, pos[0]); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("no token named %q", pos[0])
					}
					return err
				}
				fmt.Fprintf(stdout, "deleted token %s\n", pos[0])
			}
			return nil
		},
	}.main(args[1:], stdout, stderr)
}
