// Command twofold is a self-hosted two-factor login server: sign in with an
// email address and password, then a code from an authenticator app or a
// backup code. Run "twofold help" for its commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !usagePrinted(err) {
			fmt.Fprintln(os.Stderr, "twofold:", err)
		}
		os.Exit(exitCode(err))
	}
}

const usage = `twofold: a self-hosted two-factor login server

Usage:
  twofold serve               run the server (pages and JSON API)
  twofold migrate             create or update the database schema
  twofold migrate --from sqlite:PATH --to postgres://...
                              copy an installation's data to PostgreSQL
  twofold user add EMAIL      create an account; the password is read from stdin
  twofold user set-password EMAIL
                              give a user who forgot the password a new one,
                              read from stdin; their sessions end
  twofold user reset-2fa EMAIL
                              turn two-factor authentication off for a user
                              who lost the phone (recorded as an event)
  twofold key rotate          re-encrypt every secret under a new key
  twofold key add             add a key that seals nothing yet; then
                              key rotate --primary ID --keep-old, key retire:
                              a rotation for instances with their own key files
  twofold loadtest            measure this machine: sign-in rates, latency
                              and memory, on a scratch copy of twofold
  twofold version             print the version

Every command but loadtest takes --data DIR (TWOFOLD_DATA, default ./twofold-data), the
directory of the secret key files and of the SQLite database, and
--database postgres://... (TWOFOLD_DATABASE) to keep the data in PostgreSQL.
Run "twofold COMMAND --help" for the flags of a command.
`

// run is the whole program, with its surroundings as arguments so tests can
// run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdin, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil // --help asked for, and printed
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, getenv, stdout, stderr)
	case "user":
		return cmdUser(ctx, rest, getenv, stdin, stdout, stderr)
	case "key":
		return cmdKey(ctx, rest, getenv, stdout, stderr)
	case "loadtest":
		return cmdLoadtest(ctx, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "twofold version: unexpected argument %q\n", rest[0])
			return errUsage
		}
		fmt.Fprintln(stdout, "twofold", version)
		return nil
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "twofold: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}
