// Package server is twofold's HTTP front end: the HTML pages and the JSON
// API. Both only translate between HTTP and the mfa.Service, which holds
// every rule; routes.go lists the whole surface.
package server

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/twofold/twofold/internal/mfa"
)

// UserCounter reports how many accounts exist. The first-account link
// (/setup) works only while there are none. The store satisfies it.
type UserCounter interface {
	CountUsers(ctx context.Context) (int, error)
}

// Config holds the dependencies and settings of the HTTP front end.
type Config struct {
	Service *mfa.Service
	Logger  *slog.Logger // nil discards

	// AllowSignup opens the public sign-up page and API.
	AllowSignup bool

	// SetupToken is the secret of the one-time first-account link
	// /setup?token=...; it works only while Users counts no account. An
	// empty token, or a nil Users, turns the link off.
	SetupToken string
	Users      UserCounter

	// SecureCookies marks the session cookie Secure and names it with the
	// __Host- prefix. Set it when users reach the server over HTTPS through
	// a proxy that ends TLS; a request that arrives over TLS gets it anyway.
	SecureCookies bool

	// TrustProxyHeaders takes the client IP from X-Forwarded-For (the entry
	// the nearest proxy added). Set it only behind a reverse proxy that sets
	// that header; otherwise a client could claim any address.
	TrustProxyHeaders bool
}

// NewServer returns the handler of every page and API route. It panics if
// cfg.Service is nil or the embedded templates do not parse: both are
// programming errors, found at start-up.
func NewServer(cfg Config) http.Handler {
	if cfg.Service == nil {
		panic("server: Config.Service is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &kit{
		log:           log,
		secureCookies: cfg.SecureCookies,
		trustProxy:    cfg.TrustProxyHeaders,
		signupOpen:    cfg.AllowSignup,
		pages:         mustParsePages(),
	}
	mux := http.NewServeMux()
	addRoutes(mux, k, cfg)

	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.fail(w, r, errCrossOrigin)
	}))

	var h http.Handler = mux
	h = csrf.Handler(h)
	h = limitBody(h, maxBodyBytes)
	h = securityHeaders(h)
	h = recoverPanics(log, h)
	return h
}

// kit is what every handler shares: the logger, the cookie and client-IP
// settings, whether sign-up is open (for the sign-in page's link), and the
// page templates.
type kit struct {
	log           *slog.Logger
	secureCookies bool
	trustProxy    bool
	signupOpen    bool
	pages         map[string]*pageTemplate
}
