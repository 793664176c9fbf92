package server

import (
	"net/http"
)

// addRoutes lists every route of twofold. Pages and API share the Service;
// no route changes state on GET.
func addRoutes(mux *http.ServeMux, k *kit, cfg Config) {
	svc := cfg.Service

	// JSON API, documented in docs/api.md.
	mux.Handle("POST /api/v1/signup", apiSignup(k, svc, cfg.AllowSignup))
	mux.Handle("POST /api/v1/login", apiLogin(k, svc))
	mux.Handle("POST /api/v1/login/second-factor", apiSecondFactor(k, svc))
	mux.Handle("POST /api/v1/logout", apiLogout(k, svc))
	mux.Handle("GET /api/v1/me", apiMe(k, svc))
	mux.Handle("POST /api/v1/me/totp", apiBeginTOTP(k, svc))
	mux.Handle("POST /api/v1/me/totp/confirm", apiConfirmTOTP(k, svc))
	mux.Handle("POST /api/v1/me/backup-codes", apiRegenerateBackupCodes(k, svc))
	mux.Handle("POST /api/v1/me/two-factor/disable", apiDisableTwoFactor(k, svc))
	mux.Handle("POST /api/v1/me/password", apiChangePassword(k, svc))
	mux.Handle("GET /api/v1/me/events", apiEvents(k, svc))
	mux.Handle("GET /healthz", handleHealthz())

	// HTML pages.
	mux.Handle("GET /{$}", pageRoot(k, svc))
	mux.Handle("GET /login", pageLogin(k, svc))
	mux.Handle("POST /login", pageLoginSubmit(k, svc))
	mux.Handle("GET /login/token", pageToken(k, svc))
	mux.Handle("POST /login/token", pageTokenSubmit(k, svc))
	mux.Handle("POST /logout", pageLogout(k, svc))
	if cfg.AllowSignup {
		mux.Handle("GET /signup", pageSignup(k))
		mux.Handle("POST /signup", pageSignupSubmit(k, svc))
	}
	setup := newFirstAccount(cfg.SetupToken, cfg.Users)
	mux.Handle("GET /setup", pageSetup(k, setup))
	mux.Handle("POST /setup", pageSetupSubmit(k, svc, setup))
	mux.Handle("GET /dashboard", pageDashboard(k, svc))
	mux.Handle("GET /settings/security", pageSecurity(k, svc))
	mux.Handle("GET /settings/password", pagePassword(k, svc))
	mux.Handle("POST /settings/password", pagePasswordSubmit(k, svc))
	mux.Handle("GET /settings/2fa/enable", pageEnable(k, svc))
	mux.Handle("POST /settings/2fa/enable", pageEnableSubmit(k, svc))
	mux.Handle("POST /settings/2fa/confirm", pageConfirm(k, svc))
	mux.Handle("POST /settings/2fa/backup-codes", pageRegenerateCodes(k, svc))
	mux.Handle("GET /settings/2fa/disable", pageDisable(k, svc))
	mux.Handle("POST /settings/2fa/disable", pageDisableSubmit(k, svc))

	// Embedded stylesheet; the only responses a browser may cache.
	mux.Handle("GET /static/", handleStatic())

	// Every other request: 404, or 405 for a path above with another method.
	mux.Handle("/", unmatched(mux, k))
}
