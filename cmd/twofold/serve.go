package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/twofold/twofold/internal/server"
	"github.com/twofold/twofold/internal/smtp"
)

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	fs := newFlagSet("serve", "serve [flags]", getenv, stderr)
	fs.dataFlag(&cfg)
	fs.stringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to listen on (port 0 picks a free port)")
	fs.boolVar(&cfg.AllowSignup, "allow-signup", false, "open a public sign-up page")
	fs.stringVar(&cfg.Issuer, "issuer", "twofold", "name authenticator apps show for this server")
	fs.boolVar(&cfg.SecureCookies, "secure-cookies", false, "mark cookies Secure with the __Host- prefix; set it when users reach the server over HTTPS (behind a proxy that ends TLS)")
	fs.boolVar(&cfg.TrustProxy, "trust-proxy", false, "take the client IP from X-Forwarded-For; set it only behind a reverse proxy that sets it")
	fs.durationVar(&cfg.SessionIdle, "session-idle", 30*time.Minute, "a session ends after this long without use (2m at least)")
	fs.durationVar(&cfg.SessionMax, "session-max", 12*time.Hour, "a session ends this long after sign-in, whatever its use")
	fs.stringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.stringVar(&cfg.SMTPURL, "smtp-url", "", "smtp://USER:PASSWORD@HOST:587 (STARTTLS) or smtps://...:465: the mail server through which users are told of changes to their account's security")
	fs.stringVar(&cfg.MailFrom, "mail-from", "", `From address of those emails, such as "Example <no-reply@example.com>"`)
	if err := fs.parse(args, 0); err != nil {
		return err
	}
	mailer, err := newMailer(cfg)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return usageErrorf("--log-level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	tuneGC(os.Getenv)
	if mailer != nil {
		cfg.notifier = mailer
	}

	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.service.CheckSecrets(ctx); err != nil {
		return fmt.Errorf("%w; use the %s that was in %s with this database, from a backup or from another instance",
			err, keyringFile, cfg.Data)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	base := "http://" + ln.Addr().String()
	setup, err := newSetupToken()
	if err != nil {
		return err
	}
	handler := server.NewServer(server.Config{
		Service:           a.service,
		Users:             a.db,
		Logger:            log,
		AllowSignup:       cfg.AllowSignup,
		SetupToken:        setup,
		SecureCookies:     cfg.SecureCookies,
		TrustProxyHeaders: cfg.TrustProxy,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// One write: whoever waits for the "listening on" line (a script, a
	// test) finds the first-account link with it.
	banner := fmt.Sprintf("twofold %s listening on %s (database %s, keys in %s)\n", version, base, a.location, cfg.Data)
	if n, err := a.db.CountUsers(ctx); err != nil {
		return err
	} else if n == 0 {
		banner += fmt.Sprintf("No account exists yet. Create the first one here (the link works once):\n  %s/setup?token=%s\n", base, setup)
	}
	fmt.Fprint(stdout, banner)

	if mailer != nil {
		fmt.Fprintf(stdout, "Users are emailed when their account's security changes, through %s\n", mailer)
	} else {
		fmt.Fprintln(stdout, "No --smtp-url: users are not emailed when their account's security changes")
	}

	// The background work ends, and is waited for, before the database
	// closes (deferred above, so run after this).
	background, stopBackground := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopBackground(); wg.Wait() }()
	wg.Go(func() { sweep(background, a, log) })
	wg.Go(func() { a.service.DeliverNotices(background) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	fmt.Fprintln(stdout, "twofold stopped")
	return nil
}

// serveGCPercent is the garbage collector's target in serve (GOGC) unless
// the environment sets one. Each password check allocates argon2id's 19 MiB
// afresh and drops it when done: at Go's default of 100 the server
// collected after about every second hash, and each collection stops both
// CPUs for a moment while hashes wait; at 200, after about every fourth.
// Measured in the loadtest's phase 2 (docs/performance.md): 5% more
// sign-ins/s, for 25-40 MB more memory while hashing and 3 MB more at
// rest; 400 gained no more and took 100 MB more than 200.
const serveGCPercent = 200

// tuneGC sets serveGCPercent unless getenv("GOGC") is set: then the
// runtime has already applied the operator's choice.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}

// newSetupToken returns the one-time secret of the first-account link.
func newSetupToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("setup token: %w", err)
	}
	return strings.ToLower(hex.EncodeToString(b[:])), nil
}

// sweep removes ended sessions and stale throttle records from the database
// every ten minutes until ctx ends, so neither grows without bound.
func sweep(ctx context.Context, a *app, log *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := a.service.DeleteExpiredSessions(ctx); err != nil {
				log.Error("delete expired sessions", "err", err)
			} else if n > 0 {
				log.Info("deleted expired sessions", "count", n)
			}
			if n, err := a.service.DeleteStaleThrottles(ctx); err != nil {
				log.Error("delete stale throttles", "err", err)
			} else if n > 0 {
				log.Info("deleted stale throttle records", "count", n)
			}
		}
	}
}

// newMailer checks the mail settings of cfg: none, or both a server and a
// From address.
func newMailer(cfg Config) (*smtp.Mailer, error) {
	switch {
	case cfg.SMTPURL == "" && cfg.MailFrom == "":
		return nil, nil
	case cfg.SMTPURL == "":
		return nil, usageErrorf("--mail-from needs --smtp-url (TWOFOLD_SMTP_URL), the mail server to send through")
	case cfg.MailFrom == "":
		return nil, usageErrorf("--smtp-url needs --mail-from (TWOFOLD_MAIL_FROM), the From address of the emails")
	}
	m, err := smtp.New(smtp.Config{URL: cfg.SMTPURL, From: cfg.MailFrom})
	if err != nil {
		return nil, usageErrorf("--smtp-url, --mail-from: %w", err)
	}
	return m, nil
}
