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
	fs := newFlagSet("migrate", "migrate [flags]", getenv, stderr)
	fs.dataFlag(&cfg)
	if err := fs.parse(args); err != nil {
		return err
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
	fmt.Fprintf(stdout, "database %s is at schema version %d\n", cfg.Data, v)
	return nil
}

func cmdUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	const synopsis = "user add|reset-2fa [flags] EMAIL"
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: twofold %s\n", synopsis)
		return errUsage
	}
	sub := args[0]
	var cfg Config
	fs := newFlagSet("user "+sub, strings.Replace(synopsis, "add|reset-2fa", sub, 1), getenv, stderr)
	fs.dataFlag(&cfg)
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	if sub != "add" && sub != "reset-2fa" {
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
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprintln(stderr, "Usage: twofold key rotate [flags]")
		return errUsage
	}
	var cfg Config
	fs := newFlagSet("key rotate", "key rotate [flags]", getenv, stderr)
	fs.dataFlag(&cfg)
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, discardLogger())
	if err != nil {
		return err
	}
	defer a.Close()
	return rotateKeys(ctx, a, stdout)
}

// rotateKeys adds a new primary key, re-seals every secret under it, then
// retires the old keys. Until it finishes, the old keys still open what they
// sealed, so servers keep running throughout. The second pass catches a
// secret that a server sealed under the old key while its key file reload
// raced with the rotation.
func rotateKeys(ctx context.Context, a *app, out io.Writer) error {
	kr := a.keys.current()
	old := kr.KeyIDs()
	newID, err := kr.Rotate(a.keys.path, nil)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	fmt.Fprintf(out, "new primary key %s; re-encrypting secrets...\n", newID)
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
	for _, id := range old {
		if err := kr.Retire(a.keys.path, id); err != nil {
			return fmt.Errorf("retire key %s: %w", id, err)
		}
		fmt.Fprintf(out, "retired old key %s\n", id)
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
