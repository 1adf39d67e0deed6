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
	var newMsgs, oldMsgs, urgentNew, urgentOld int
	return storeCommand{
		name: "mwi", usage: mwiUsage,
		args: map[string][2]int{"set": {1, 1}, "show": {1, 1}},
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&newMsgs, "new", 0, "set: new (unheard) messages")
			fs.IntVar(&oldMsgs, "old", 0, "set: old (heard) messages")
			fs.IntVar(&urgentNew, "urgent-new", 0, "set: new urgent messages (of --new)")
			fs.IntVar(&urgentOld, "urgent-old", 0, "set: old urgent messages (of --old)")
		},
		check: func(cmd string, pos []string) error {
			if !strings.Contains(pos[0], "@") {
				return errors.New("want an AOR, user@domain")
			}
			if newMsgs < 0 || oldMsgs < 0 || urgentNew < 0 || urgentOld < 0 || urgentNew > newMsgs || urgentOld > oldMsgs {
				return errors.New("counts must not be negative, urgent ones at most their total")
			}
			return nil
		},
		run: func(ctx context.Context, st store.Store, cmd string, pos []string, stdout io.Writer) error {
			aor := strings.ToLower(pos[0])
			if cmd == "set" {
				m := store.Mailbox{AOR: aor, New: newMsgs, Old: oldMsgs, UrgentNew: urgentNew, UrgentOld: urgentOld}
				if err := st.PutMailbox(ctx, m); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: %d new, %d old (%d/%d urgent)\n", aor, m.New, m.Old, m.UrgentNew, m.UrgentOld)
				return nil
			}
			m, err := st.Mailbox(ctx, aor)
			if errors.Is(err, store.ErrNotFound) {
				fmt.Fprintf(stdout, "%s: no messages\n", aor)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: %d new, %d old (%d/%d urgent), updated %s\n", aor, m.New, m.Old, m.UrgentNew, m.UrgentOld,
				m.Updated.UTC().Format(time.RFC3339))
			return nil
		},
	}.main(args, stdout, stderr)
}
