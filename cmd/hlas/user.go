package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/store"
)

const userUsage = `usage: hlas user <command> [flags]

Subscribers: who may register and authenticate (RFC 3261 §22). Passwords
are stored only as digest hashes (MD5 and SHA-256, realm = the domain).
Works while the server runs; the server sees changes at once.

commands:
  add AOR [--password P]      add user@domain (password from stdin when not given)
  del AOR                     remove a subscriber
  passwd AOR [--password P]   set a new password
  list [DOMAIN]               list subscribers
  import FILE.csv [--domain D]
                              add or replace many: rows "user,password", user as
                              user@domain or bare with --domain; one transaction

flags (every command):
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

const regUsage = `usage: hlas reg list [AOR] [--data DIR | --config FILE]

Lists the current registrations (bindings) from the store: what the
registrar had at its last write, including while it runs.
`

// storeFlags are the flags that locate the store, shared by `hlas user`
// and `hlas reg`.
type storeFlags struct {
	data   *string
	config *string
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		data:   fs.String("data", "", "data directory holding the embedded database (default ./hlas-data, or the config's)"),
		config: fs.String("config", "", "the server's YAML configuration file (its data and store settings)"),
	}
}

// open opens the store the flags name: the config file's store and data
// directory, with --data overriding the directory.
func (f storeFlags) open(ctx context.Context) (store.Store, error) {
	var cfg server.Config
	if *f.config != "" {
		if err := cfg.LoadFile(*f.config); err != nil {
			return nil, err
		}
	}
	if *f.data != "" {
		cfg.DataDir = *f.data
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./hlas-data"
	}
	return store.Open(ctx, store.Config{URL: cfg.Store, Dir: cfg.DataDir})
}

// userMain runs `hlas user`.
func userMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "add", "del", "passwd", "list", "import":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, userUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "hlas user: unknown command %q\n%s", cmd, userUsage)
		return 2
	}
	fs := flag.NewFlagSet("hlas user "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, userUsage) }
	sf := addStoreFlags(fs)
	password := fs.String("password", "", "the password (add, passwd); read from stdin when not given")
	domain := fs.String("domain", "", "import: the domain of rows that give a bare user name")
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	want := map[string][2]int{"add": {1, 1}, "del": {1, 1}, "passwd": {1, 1}, "list": {0, 1}, "import": {1, 1}}[cmd]
	if len(pos) < want[0] || len(pos) > want[1] {
		fmt.Fprintf(stderr, "hlas user %s: wrong number of arguments\n%s", cmd, userUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas user:", err)
		return 1
	}
	defer st.Close()
	if err := runUser(ctx, st, cmd, pos, *password, *domain, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "hlas user %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func runUser(ctx context.Context, st store.Store, cmd string, pos []string, password, domain string, stdin io.Reader, stdout io.Writer) error {
	switch cmd {
	case "add", "passwd":
		user, dom, err := store.SplitAOR(pos[0])
		if err != nil {
			return err
		}
		if password == "" {
			if password, err = readPassword(stdin); err != nil {
				return err
			}
		}
		u := auth.NewUser(user, dom, password)
		if cmd == "add" {
			if err := st.AddUser(ctx, u); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added %s\n", u.AOR())
			return nil
		}
		if err := st.SetUserHashes(ctx, u.Username, u.Domain, u.HA1MD5, u.HA1SHA256); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed\n", u.AOR())
	case "del":
		user, dom, err := store.SplitAOR(pos[0])
		if err != nil {
			return err
		}
		if err := st.DeleteUser(ctx, user, dom); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s@%s\n", user, dom)
	case "list":
		filter := ""
		if len(pos) == 1 {
			filter = pos[0]
		}
		us, err := st.ListUsers(ctx, filter)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "AOR\tCREATED\tUPDATED")
		for _, u := range us {
			fmt.Fprintf(w, "%s\t%s\t%s\n", u.AOR(), u.Created.UTC().Format(time.RFC3339), u.Updated.UTC().Format(time.RFC3339))
		}
		return w.Flush()
	case "import":
		start := time.Now()
		us, err := readUserCSV(pos[0], domain)
		if err != nil {
			return err
		}
		if err := st.PutUsers(ctx, us); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d users in %v\n", len(us), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// readPassword takes the first line of stdin.
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password: give --password or one line on stdin")
	}
	return line, nil
}

// readUserCSV reads "user,password" rows (a header row naming "user" and
// "password" and lines starting with # are skipped) and hashes them.
func readUserCSV(path, domain string) ([]store.User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var out []store.User
	seen := make(map[string]int)
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(rec) < 2 {
			return nil, fmt.Errorf("%s line %d: want user,password", path, line)
		}
		name, pass := strings.TrimSpace(rec[0]), rec[1]
		if line == 1 && (strings.EqualFold(name, "user") || strings.EqualFold(name, "username")) && strings.EqualFold(pass, "password") {
			continue
		}
		if !strings.Contains(name, "@") {
			if domain == "" {
				return nil, fmt.Errorf("%s line %d: %q has no domain; give user@domain or --domain", path, line, name)
			}
			name += "@" + domain
		}
		user, dom, err := store.SplitAOR(name)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if pass == "" {
			return nil, fmt.Errorf("%s line %d: empty password", path, line)
		}
		u := auth.NewUser(user, dom, pass)
		if i, dup := seen[u.AOR()]; dup {
			out[i] = u // the last row wins
			continue
		}
		seen[u.AOR()] = len(out)
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no users", path)
	}
	return out, nil
}

// regMain runs `hlas reg`.
func regMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, regUsage)
			return 0
		}
		fmt.Fprint(stderr, regUsage)
		return 2
	}
	fs := flag.NewFlagSet("hlas reg list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, regUsage) }
	sf := addStoreFlags(fs)
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) > 1 {
		return 2
	}
	aor := ""
	if len(pos) == 1 {
		user, dom, err := store.SplitAOR(pos[0])
		if err != nil {
			fmt.Fprintln(stderr, "hlas reg list:", err)
			return 2
		}
		aor = user + "@" + dom
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas reg:", err)
		return 1
	}
	defer st.Close()
	now := time.Now()
	bs, err := st.Bindings(ctx, aor, now)
	if err != nil {
		fmt.Fprintln(stderr, "hlas reg:", err)
		return 1
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AOR\tCONTACT\tEXPIRES\tSOURCE\tTRANSPORT\tUSER-AGENT")
	for _, b := range bs {
		left := b.Expires.Sub(now).Round(time.Second)
		fmt.Fprintf(w, "%s\t%s\t%ds\t%s\t%s\t%s\n", b.AOR, b.Contact, int(left.Seconds()), b.Source, b.Transport, b.UserAgent)
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}
