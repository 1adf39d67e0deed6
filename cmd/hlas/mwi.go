package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/store"
)

const mwiUsage = `usage: hlas mwi <command> AOR [flags]

Message waiting (RFC 3842): the counts of an account's mailbox, which the
server notifies to the phones subscribed to its message-summary (the
message-waiting lamp). Works while the server runs: it notifies within a
second.

commands:
  set AOR --new N --old N [--urgent-new N] [--urgent-old N]
  show AOR

flags (every command):
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

// mwiMain runs `hlas mwi`.
func mwiMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mwiUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "set", "show":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mwiUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "hlas mwi: unknown command %q\n%s", cmd, mwiUsage)
		return 2
	}
	fs := flag.NewFlagSet("hlas mwi "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, mwiUsage) }
	sf := addStoreFlags(fs)
	newMsgs := fs.Int("new", 0, "set: new (unheard) messages")
	oldMsgs := fs.Int("old", 0, "set: old (heard) messages")
	urgentNew := fs.Int("urgent-new", 0, "set: new urgent messages (of --new)")
	urgentOld := fs.Int("urgent-old", 0, "set: old urgent messages (of --old)")
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 1 || !strings.Contains(pos[0], "@") {
		fmt.Fprintf(stderr, "hlas mwi %s: want one AOR, user@domain\n%s", cmd, mwiUsage)
		return 2
	}
	if *newMsgs < 0 || *oldMsgs < 0 || *urgentNew < 0 || *urgentOld < 0 || *urgentNew > *newMsgs || *urgentOld > *oldMsgs {
		fmt.Fprintln(stderr, "hlas mwi set: counts must not be negative, urgent ones at most their total")
		return 2
	}
	aor := strings.ToLower(pos[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas mwi:", err)
		return 1
	}
	defer st.Close()
	switch cmd {
	case "set":
		m := store.Mailbox{AOR: aor, New: *newMsgs, Old: *oldMsgs, UrgentNew: *urgentNew, UrgentOld: *urgentOld}
		if err := st.PutMailbox(ctx, m); err != nil {
			fmt.Fprintln(stderr, "hlas mwi set:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %d new, %d old (%d/%d urgent)\n", aor, m.New, m.Old, m.UrgentNew, m.UrgentOld)
	case "show":
		m, err := st.Mailbox(ctx, aor)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stdout, "%s: no messages\n", aor)
			return 0
		}
		if err != nil {
			fmt.Fprintln(stderr, "hlas mwi show:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %d new, %d old (%d/%d urgent), updated %s\n", aor, m.New, m.Old, m.UrgentNew, m.UrgentOld,
			m.Updated.UTC().Format(time.RFC3339))
	}
	return 0
}
