package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/twofold/twofold/internal/postgres"
	"github.com/twofold/twofold/internal/sqlite"
)

// cmdCopy is "twofold migrate --from sqlite:PATH --to postgres://...": it
// moves an installation's data to PostgreSQL.
func cmdCopy(ctx context.Context, from, to string, stdout io.Writer) error {
	path, ok := strings.CutPrefix(from, "sqlite:")
	if !ok || path == "" {
		return usageErrorf("--from %q: want sqlite:PATH, the SQLite database to copy", redactURL(from))
	}
	if !isPostgresURL(to) {
		return usageErrorf("--to %q: want postgres://USER@HOST/DB, an empty PostgreSQL database", redactURL(to))
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--from %s: no such database", path)
	}
	t0 := time.Now()
	err := copyToPostgres(ctx, path, to, func(format string, args ...any) {
		fmt.Fprintf(stdout, format+"\n", args...)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %s to %s in %s. Start the instances with --database and the key files of the installation.\n",
		path, redactURL(to), time.Since(t0).Round(time.Millisecond))
	return nil
}

// copyToPostgres copies every table of the SQLite database at path, IDs and
// all, into the empty PostgreSQL database at url, in one transaction.
func copyToPostgres(ctx context.Context, path, url string, progress func(string, ...any)) error {
	src, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	data, err := src.Export(ctx)
	if cerr := src.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	dst, err := postgres.Open(ctx, url)
	if err != nil {
		return err
	}
	defer dst.Close()
	progress("copying %s to %s...", path, redactURL(url))
	err = dst.Import(ctx, data, func(table string, rows int) {
		progress("  %-17s %d rows", table, rows)
	})
	if err != nil {
		return fmt.Errorf("%w (nothing was copied)", err)
	}
	return nil
}
