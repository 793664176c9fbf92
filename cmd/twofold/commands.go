package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

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
	if err := fs.parse(args); err != nil {
		return err
	}
	if from != "" || to != "" {
		if from == "" || to == "" {
			return errors.New("migrate: --from and --to go together: twofold migrate --from sqlite:PATH --to postgres://...")
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

func cmdUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	const synopsis = "user add|set-password|reset-2fa [flags] EMAIL"
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: twofold %s\n", synopsis)
		return errUsage
	}
	sub := args[0]
	var cfg Config
	fs := newFlagSet("user "+sub, strings.Replace(synopsis, "add|set-password|reset-2fa", sub, 1), getenv, stderr)
	fs.dataFlag(&cfg)
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	if sub != "add" && sub != "set-password" && sub != "reset-2fa" {
		fmt.Fprintf(stderr, "twofold: unknown command \"user %s\"\nUsage: twofold %s\n", sub, synopsis)
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
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

const keySynopsis = "key add|rotate|retire [flags]"

func cmdKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "rotate" && args[0] != "retire") {
		fmt.Fprintf(stderr, "Usage: twofold %s\n", keySynopsis)
		return errUsage
	}
	sub := args[0]
	var cfg Config
	var primary string
	var keepOld bool
	fs := newFlagSet("key "+sub, "key "+sub+" [flags]", getenv, stderr)
	fs.dataFlag(&cfg)
	cfg.requireData = true
	if sub == "rotate" {
		fs.stringVar(&primary, "primary", "", "make this key, added by \"key add\", the primary key instead of a new one")
		fs.boolVar(&keepOld, "keep-old", false, "keep the old keys, for instances that have not got the new key file yet; \"key retire\" removes them later")
	}
	if err := fs.parse(args[1:]); err != nil {
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
