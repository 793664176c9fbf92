package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/twofold/twofold/internal/mfa"
)

// cliClient marks events caused from the command line.
var cliClient = mfa.Client{IP: "command line"}

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	var from, to string
	fs := newFlagSet("migrate", "migrate [flags]", getenv, stderr)
	fs.dataFlag(&cfg)
	fs.stringVar(&from, "from", "", "sqlite:PATH: copy this database's data, with --to, instead of updating the schema")
	fs.stringVar(&to, "to", "", "postgres://USER@HOST/DB: the empty PostgreSQL database that --from is copied into")
	if err := fs.parse(args, 0); err != nil {
		return err
	}
	if from != "" || to != "" {
		if from == "" || to == "" {
			return usageErrorf("migrate: --from and --to go together: twofold migrate --from sqlite:PATH --to postgres://...")
		}
		return cmdCopy(ctx, from, to, stdout)
	}
	a, err := openApp(ctx, cfg, discardLogger())
	if err != nil {
		return err
	}
	defer a.Close()
	v, err := a.db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database %s is at schema version %d\n", a.location, v)
	return nil
}

// commandGroup is a command made of subcommands, such as "user add".
type commandGroup struct {
	name string
	subs []subcommand
}

// subcommand is one command of a group, with its arguments past the flags
// and a line on what it does, for the group's usage.
type subcommand struct {
	name, args, summary string
}

var userCommands = commandGroup{"user", []subcommand{
	{"add", "EMAIL", "create an account; the password is read from stdin"},
	{"set-password", "EMAIL", "give a user who forgot the password a new one, read from stdin; their sessions end"},
	{"reset-2fa", "EMAIL", "turn two-factor authentication off for a user who lost the phone (recorded as an event)"},
}}

var keyCommands = commandGroup{"key", []subcommand{
	{"rotate", "", "re-encrypt every secret under a new key; running servers follow"},
	{"add", "", "add a key that seals nothing yet; then key rotate --primary ID --keep-old, then key retire: a rotation for instances with their own key files"},
	{"retire", "", "re-encrypt what an old key still seals, then remove every key but the primary one"},
}}

// pick returns the subcommand that args name. With no subcommand, or an
// unknown one, it prints the group's usage and returns errUsage; asked for
// help (twofold user --help), it prints the usage and returns errHelp.
func (g commandGroup) pick(args []string, stderr io.Writer) (subcommand, error) {
	if len(args) == 0 {
		g.usage(stderr)
		return subcommand{}, errUsage
	}
	switch args[0] {
	case "help", "--help", "-help", "-h", "--h":
		g.usage(stderr)
		return subcommand{}, errHelp
	}
	for _, sub := range g.subs {
		if sub.name == args[0] {
			return sub, nil
		}
	}
	fmt.Fprintf(stderr, "twofold: unknown command \"%s %s\"\n\n", g.name, args[0])
	g.usage(stderr)
	return subcommand{}, errUsage
}

// usage lists the group's subcommands, each with what it does.
func (g commandGroup) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: twofold %s COMMAND [flags]\n\nCommands:\n", g.name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, sub := range g.subs {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(sub.name+" "+sub.args), sub.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"twofold %s COMMAND --help\" for the flags of a command.\n", g.name)
}

// synopsis is the usage line of sub, without "twofold".
func (g commandGroup) synopsis(sub subcommand) string {
	return strings.TrimSpace(g.name + " " + sub.name + " [flags] " + sub.args)
}

func cmdUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd, err := userCommands.pick(args, stderr)
	if err != nil {
		return err
	}
	sub := cmd.name
	var cfg Config
	fs := newFlagSet("user "+sub, userCommands.synopsis(cmd), getenv, stderr)
	fs.dataFlag(&cfg)
	if err := fs.parse(args[1:], 1); err != nil {
		return err
	}
	email := fs.Arg(0)
	a, err := openApp(ctx, cfg, discardLogger())
	if err != nil {
		return err
	}
	defer a.Close()

	if sub == "reset-2fa" {
		if err := a.service.ResetTwoFactor(ctx, email, cliClient); err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "two-factor authentication is off for %s; their sessions have ended\n", email)
		return nil
	}
	pw, err := readPassword(stdin)
	if err != nil {
		return err
	}
	if sub == "set-password" {
		if err := a.service.SetPassword(ctx, email, pw, cliClient); err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "the password of %s is changed; their sessions have ended\n", email)
		return nil
	}
	u, err := a.service.CreateUser(ctx, email, pw, cliClient)
	if err != nil {
		return userError(err)
	}
	fmt.Fprintf(stdout, "created %s\n", u.Email)
	return nil
}

// readPassword reads one line from r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("read password from stdin: empty; pipe it in, e.g. echo \"$PASSWORD\" | twofold user add EMAIL")
	}
	return line, nil
}

// userError shows a domain error by its message, which is written for people.
func userError(err error) error {
	var e *mfa.Error
	if errors.As(err, &e) && e.Kind != mfa.KindInternal {
		return errors.New(e.Message)
	}
	return err
}

func cmdKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, err := keyCommands.pick(args, stderr)
	if err != nil {
		return err
	}
	sub := cmd.name
	var cfg Config
	var primary string
	var keepOld bool
	fs := newFlagSet("key "+sub, keyCommands.synopsis(cmd), getenv, stderr)
	fs.dataFlag(&cfg)
	cfg.requireData = true
	if sub == "rotate" {
		fs.stringVar(&primary, "primary", "", "make this key, added by \"key add\", the primary key instead of a new one")
		fs.boolVar(&keepOld, "keep-old", false, "keep the old keys, for instances that have not got the new key file yet; \"key retire\" removes them later")
	}
	if err := fs.parse(args[1:], 0); err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, discardLogger())
	if err != nil {
		return err
	}
	defer a.Close()
	kr := a.keys.current()
	switch sub {
	case "add":
		id, err := kr.Add(a.keys.path, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added key %s; nothing is sealed under it yet. Copy %s to every instance, then run:\n  twofold key rotate --primary %s --keep-old\n", id, a.keys.path, id)
		return nil
	case "retire":
		primary = kr.PrimaryID()
	}
	return rotateKeys(ctx, a, primary, keepOld, stdout)
}

// rotateKeys makes primary (a new key if empty) the primary key, re-seals
// every secret under it, then retires the other keys unless keepOld. Until
// then, the old keys still open what they sealed, so servers keep running
// throughout. The second pass catches a secret that a server sealed under an
// old key while its key file reload raced with the rotation.
func rotateKeys(ctx context.Context, a *app, primary string, keepOld bool, out io.Writer) error {
	kr := a.keys.current()
	switch {
	case primary == "":
		id, err := kr.Rotate(a.keys.path, nil)
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		primary = id
		fmt.Fprintf(out, "new primary key %s; re-encrypting secrets...\n", primary)
	case primary != kr.PrimaryID():
		if err := kr.Promote(a.keys.path, primary); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		fmt.Fprintf(out, "primary key %s; re-encrypting secrets...\n", primary)
	default:
		fmt.Fprintf(out, "re-encrypting secrets under the primary key %s...\n", primary)
	}
	for pass := 1; pass <= 2; pass++ {
		n, err := a.service.ResealSecrets(ctx, func(done int) {
			fmt.Fprintf(out, "  %d secrets re-encrypted\n", done)
		})
		if err != nil {
			return fmt.Errorf("rotate: %w (the old keys stay in place; run the rotation again)", err)
		}
		if pass == 1 {
			fmt.Fprintf(out, "re-encrypted %d secrets\n", n)
		}
	}
	if keepOld {
		fmt.Fprintf(out, "old keys kept. Copy %s to every instance, then run: twofold key retire\n", a.keys.path)
		return nil
	}
	for _, id := range kr.KeyIDs()[1:] {
		if err := kr.Retire(a.keys.path, id); err != nil {
			return fmt.Errorf("retire key %s: %w", id, err)
		}
		fmt.Fprintf(out, "retired old key %s\n", id)
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
