// Package pgadmin creates and drops PostgreSQL databases, for scratch
// databases of tests and of the load test.
package pgadmin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// databaseName is what Create and Drop accept: a plain
// identifier, so it needs no quoting.
var databaseName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Create creates the empty database name on the server that the
// connection string server reaches (its user needs CREATEDB), and returns
// server's connection string with its database replaced by name.
func Create(ctx context.Context, server, name string) (string, error) {
	if !databaseName.MatchString(name) {
		return "", fmt.Errorf("pgadmin: create database %q: want lower-case letters, digits and _", name)
	}
	conn, err := WithDatabase(server, name)
	if err != nil {
		return "", err
	}
	if err := exec(ctx, server, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgadmin: create database %s: %w", name, err)
	}
	return conn, nil
}

// Drop drops the database name on server, ending its connections.
func Drop(ctx context.Context, server, name string) error {
	if !databaseName.MatchString(name) {
		return fmt.Errorf("pgadmin: drop database %q: want lower-case letters, digits and _", name)
	}
	if err := exec(ctx, server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgadmin: drop database %s: %w", name, err)
	}
	return nil
}

// WithDatabase returns the connection string server, a URL or a
// keyword/value string, with its database replaced by name.
func WithDatabase(server, name string) (string, error) {
	if strings.HasPrefix(server, "postgres://") || strings.HasPrefix(server, "postgresql://") {
		u, err := url.Parse(server)
		if err != nil {
			// url's errors quote the URL, password and all.
			return "", errors.New("pgadmin: the server URL does not parse")
		}
		u.Path, u.RawPath = "/"+name, ""
		q := u.Query()
		if q.Has("dbname") { // it would win over the path
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	return server + " dbname=" + name, nil // the last of a repeated keyword wins
}

// exec runs one statement on its own connection to server.
func exec(ctx context.Context, server, sql string) error {
	// Parsed as the pool parses it, so that pool_* parameters are allowed.
	cfg, err := pgxpool.ParseConfig(server)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
