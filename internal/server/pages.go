package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/otp"
)

// The HTML pages. They need no JavaScript: every step is a link or a form,
// and every POST answers with a page or a 303 redirect.

type errorPage struct {
	layout
	Message string
}

type loginPage struct {
	layout
	Email      string
	SignupOpen bool
}

type tokenPage struct {
	layout
	Email  string
	Backup bool // the backup code form rather than the authenticator one
}

type accountPage struct { // sign-up and first-account setup
	layout
	Email string
	Token string // setup only
	Setup bool
}

type dashboardPage struct {
	layout
	Status mfa.Status
}

type securityPage struct {
	layout
	Status mfa.Status
	Events []eventView
}

func (p *securityPage) CodesForm() codesForm {
	return codesForm{Set: p.Status.BackupCodeSet, Described: p.Error != ""}
}

// codesForm is the Show Codes form: on the security page, and again on the
// page that answers it sent twice.
type codesForm struct {
	Set       string // Status.BackupCodeSet when the form is shown
	Described bool   // the page's error is about the password field
	Again     bool   // the form shown again: its field has the focus
}

type eventView struct {
	At      time.Time
	IP      string
	Summary string
}

type enablePasswordPage struct {
	layout
}

type enableScanPage struct {
	layout
	QR      template.URL
	QRSize  int
	Key     string // the secret in groups of four
	Account string
	Issuer  string
}

type codesPage struct {
	layout
	Heading  string
	Intro    string
	Codes    []string
	Download template.URL
	FileName string // of the download
	Done     string // where "Done" leads: a fixed local path
}

// codesReplacedPage answers a Show Codes form sent again: its set was
// replaced already. It shows the form afresh, for the set now current.
type codesReplacedPage struct {
	layout
	Set string // Status.BackupCodeSet
}

func (p *codesReplacedPage) CodesForm() codesForm {
	return codesForm{Set: p.Set, Described: p.Error != "", Again: true}
}

type disablePage struct {
	layout
}

type passwordPage struct {
	layout
}

// withPageUser runs next for a fully signed-in user; anyone else is sent to
// the sign-in page, a sign-in waiting for its second factor included.
func withPageUser(k *kit, svc *mfa.Service, next func(w http.ResponseWriter, r *http.Request, u *mfa.User)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, u, err := svc.Authenticate(r.Context(), k.token(r))
		if mfa.ErrorKind(err) == mfa.KindUnauthenticated {
			redirect(w, r, "/login")
			return
		}
		if err != nil {
			k.fail(w, r, err)
			return
		}
		next(w, r, u)
	})
}

// signedIn reports whether r comes from a fully signed-in user.
func signedIn(k *kit, svc *mfa.Service, r *http.Request) (bool, error) {
	_, _, err := svc.Authenticate(r.Context(), k.token(r))
	if mfa.ErrorKind(err) == mfa.KindUnauthenticated {
		return false, nil
	}
	return err == nil, err
}

func pageRoot(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, err := signedIn(k, svc, r)
		switch {
		case err != nil:
			k.fail(w, r, err)
		case ok:
			redirect(w, r, "/dashboard")
		default:
			redirect(w, r, "/login")
		}
	})
}

// Sign in, step one: email and password.

func pageLogin(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, err := signedIn(k, svc, r)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		if ok {
			redirect(w, r, "/dashboard")
			return
		}
		k.render(w, r, http.StatusOK, "login", &loginPage{
			layout:     layout{Title: "Sign in", Flash: flash(r)},
			SignupOpen: k.signupOpen,
		})
	})
}

func pageLoginSubmit(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		email := r.PostFormValue("email")
		res, err := svc.Login(r.Context(), email, r.PostFormValue("password"), k.client(r))
		if err != nil {
			status, msg := k.formProblem(w, r, err)
			k.render(w, r, status, "login", &loginPage{
				layout:     layout{Title: "Sign in", Error: msg},
				Email:      email,
				SignupOpen: k.signupOpen,
			})
			return
		}
		k.signIn(w, r, svc, res.Token)
		if res.SecondFactorRequired() {
			redirect(w, r, "/login/token")
			return
		}
		redirect(w, r, "/dashboard")
	})
}

// Sign in, step two: a code from the authenticator app, or a backup code.

func pageToken(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, u, err := svc.PendingLogin(r.Context(), k.token(r))
		if errors.Is(err, mfa.ErrLoginExpired) {
			redirect(w, r, "/login?msg=expired")
			return
		}
		if err != nil {
			k.fail(w, r, err)
			return
		}
		backup := r.URL.Query().Get("method") == string(mfa.MethodBackupCode)
		k.render(w, r, http.StatusOK, "token", newTokenPage(u, backup, ""))
	})
}

func newTokenPage(u *mfa.User, backup bool, errMsg string) *tokenPage {
	title := "Enter your token"
	if backup {
		title = "Enter a backup code"
	}
	return &tokenPage{layout: layout{Title: title, Error: errMsg}, Email: u.Email, Backup: backup}
}

func pageTokenSubmit(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		method := mfa.Method(r.PostFormValue("method"))
		res, err := svc.VerifySecondFactor(r.Context(), k.token(r), method, r.PostFormValue("code"), k.client(r))
		if errors.Is(err, mfa.ErrLoginExpired) {
			redirect(w, r, "/login?msg=expired")
			return
		}
		if err != nil {
			status, msg := k.formProblem(w, r, err)
			_, u, perr := svc.PendingLogin(r.Context(), k.token(r))
			if errors.Is(perr, mfa.ErrLoginExpired) {
				redirect(w, r, "/login?msg=expired")
				return
			}
			if perr != nil {
				k.fail(w, r, perr)
				return
			}
			k.render(w, r, status, "token", newTokenPage(u, method == mfa.MethodBackupCode, msg))
			return
		}
		k.setToken(w, r, res.Token)
		redirect(w, r, "/dashboard")
	})
}

func pageLogout(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := k.endSession(w, r, svc); err != nil {
			k.fail(w, r, err)
			return
		}
		redirect(w, r, "/login?msg=signed_out")
	})
}

// Accounts: public sign-up (when open) and the first-account link.

func pageSignup(k *kit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.render(w, r, http.StatusOK, "account", &accountPage{layout: layout{Title: "Create an account"}})
	})
}

func pageSignupSubmit(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		email := r.PostFormValue("email")
		if _, err := svc.SignUp(r.Context(), email, r.PostFormValue("password"), k.client(r)); err != nil {
			status, msg := k.formProblem(w, r, err)
			k.render(w, r, status, "account", &accountPage{
				layout: layout{Title: "Create an account", Error: msg}, Email: email,
			})
			return
		}
		redirect(w, r, "/login?msg=account_created")
	})
}

// firstAccount guards the one-time link that creates the first account of a
// new server. It works while no account exists, with the token the server
// printed at start-up; creations through it are serialised, so two
// concurrent posts of the link cannot both create an account.
type firstAccount struct {
	token string
	users UserCounter
	mu    sync.Mutex
}

func newFirstAccount(token string, users UserCounter) *firstAccount {
	return &firstAccount{token: token, users: users}
}

var errSetupLink = &httpError{http.StatusNotFound, "setup_link_invalid",
	"This setup link is not valid: the link is wrong, or an account has been created already. Sign in instead."}

// check returns nil if token opens the link now.
func (f *firstAccount) check(r *http.Request, token string) error {
	if f.token == "" || f.users == nil || subtle.ConstantTimeCompare([]byte(token), []byte(f.token)) != 1 {
		return errSetupLink
	}
	n, err := f.users.CountUsers(r.Context())
	if err != nil {
		return fmt.Errorf("server: count users: %w", err)
	}
	if n > 0 {
		return errSetupLink
	}
	return nil
}

func pageSetup(k *kit, f *firstAccount) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("token")
		if err := f.check(r, token); err != nil {
			k.fail(w, r, err)
			return
		}
		k.render(w, r, http.StatusOK, "account", &accountPage{
			layout: layout{Title: "Create the first account"}, Token: token, Setup: true,
		})
	})
}

func pageSetupSubmit(k *kit, svc *mfa.Service, f *firstAccount) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		token, email := r.PostFormValue("token"), r.PostFormValue("email")
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.check(r, token); err != nil {
			k.fail(w, r, err)
			return
		}
		if _, err := svc.CreateUser(r.Context(), email, r.PostFormValue("password"), k.client(r)); err != nil {
			status, msg := k.formProblem(w, r, err)
			k.render(w, r, status, "account", &accountPage{
				layout: layout{Title: "Create the first account", Error: msg},
				Email:  email, Token: token, Setup: true,
			})
			return
		}
		redirect(w, r, "/login?msg=account_created")
	})
}

// Signed-in pages.

func pageDashboard(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		st, err := svc.Status(r.Context(), u.ID)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.render(w, r, http.StatusOK, "dashboard", &dashboardPage{
			layout: layout{Title: "Dashboard", User: u, Flash: flash(r)}, Status: st,
		})
	})
}

func pageSecurity(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		renderSecurity(k, svc, w, r, http.StatusOK, u, flash(r), "")
	})
}

// securityEvents is how many recent events the security page lists.
const securityEvents = 20

func renderSecurity(k *kit, svc *mfa.Service, w http.ResponseWriter, r *http.Request, status int, u *mfa.User, flashMsg, errMsg string) {
	st, err := svc.Status(r.Context(), u.ID)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	evs, err := svc.Events(r.Context(), u.ID, securityEvents)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	views := make([]eventView, len(evs))
	for i, e := range evs {
		views[i] = eventView{At: e.At.UTC(), IP: e.IP, Summary: e.Summary()}
	}
	k.render(w, r, status, "security", &securityPage{
		layout: layout{Title: "Account security", User: u, Flash: flashMsg, Error: errMsg},
		Status: st, Events: views,
	})
}

// The enable wizard: confirm the password, scan the QR code and type a
// code, save the backup codes.

func pageEnable(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		st, err := svc.Status(r.Context(), u.ID)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		if st.TwoFactorEnabled {
			redirect(w, r, "/settings/security?msg=already_enabled")
			return
		}
		if st.PendingSetup && r.URL.Query().Get("restart") == "" {
			enr, err := svc.PendingTOTP(r.Context(), u)
			if err == nil {
				renderScan(k, w, r, http.StatusOK, u, svc.Issuer(), enr, "")
				return
			}
			if errors.Is(err, mfa.ErrAlreadyEnabled) { // confirmed meanwhile, in another tab
				redirect(w, r, "/settings/security?msg=already_enabled")
				return
			}
			if !errors.Is(err, mfa.ErrNoEnrollment) {
				k.fail(w, r, err)
				return
			}
		}
		renderEnablePassword(k, w, r, http.StatusOK, u, "")
	})
}

func renderEnablePassword(k *kit, w http.ResponseWriter, r *http.Request, status int, u *mfa.User, errMsg string) {
	k.render(w, r, status, "enable_password", &enablePasswordPage{
		layout: layout{Title: "Turn on two-factor authentication", User: u, Error: errMsg},
	})
}

func renderScan(k *kit, w http.ResponseWriter, r *http.Request, status int, u *mfa.User, issuer string, enr *mfa.Enrollment, errMsg string) {
	qr, err := newQRCode(enr.URI)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	k.render(w, r, status, "enable_scan", &enableScanPage{
		layout:  layout{Title: "Scan the QR code", User: u, Error: errMsg},
		QR:      qr.DataURL(),
		QRSize:  qr.Size,
		Key:     otp.FormatSecretGroups(enr.Secret),
		Account: u.Email,
		Issuer:  issuer,
	})
}

func pageEnableSubmit(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		_, err := svc.BeginTOTP(r.Context(), u, r.PostFormValue("password"), k.client(r))
		if errors.Is(err, mfa.ErrAlreadyEnabled) {
			redirect(w, r, "/settings/security?msg=already_enabled")
			return
		}
		if err != nil {
			status, msg := k.formProblem(w, r, err)
			renderEnablePassword(k, w, r, status, u, msg)
			return
		}
		// The QR code is shown by GET, so reloading it shows the same key
		// rather than resubmitting the form for a new one.
		redirect(w, r, "/settings/2fa/enable")
	})
}

func pageConfirm(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		codes, token, err := svc.ConfirmTOTP(r.Context(), u, r.PostFormValue("code"), k.client(r))
		if err == nil {
			k.replaceToken(w, r, token)
			renderCodes(k, w, r, u, svc.Issuer(), "Save your backup codes",
				"Two-factor authentication is now on. If you lose your phone, each of these codes lets you sign in once. "+
					"Keep them somewhere safe: this is the only time they are shown.",
				"/settings/security?msg=enabled", codes)
			return
		}
		if errors.Is(err, mfa.ErrAlreadyEnabled) {
			// Sent again, say by reloading the codes page: those codes
			// were shown once and are not kept to be shown again.
			redirect(w, r, "/settings/security?msg=codes_shown_once")
			return
		}
		status, msg := k.formProblem(w, r, err)
		if errors.Is(err, mfa.ErrNoEnrollment) {
			renderEnablePassword(k, w, r, status, u, msg)
			return
		}
		enr, perr := svc.PendingTOTP(r.Context(), u)
		if errors.Is(perr, mfa.ErrAlreadyEnabled) { // confirmed meanwhile, in another tab
			redirect(w, r, "/settings/security?msg=already_enabled")
			return
		}
		if errors.Is(perr, mfa.ErrNoEnrollment) {
			renderEnablePassword(k, w, r, http.StatusConflict, u, mfa.ErrNoEnrollment.Message)
			return
		}
		if perr != nil {
			k.fail(w, r, perr)
			return
		}
		renderScan(k, w, r, status, u, svc.Issuer(), enr, msg)
	})
}

// pageRegenerateCodes makes a new set of backup codes ("Show Codes"). The
// form carries the set it was shown with, so that sending it again (by
// reloading the page of codes it answered, or by a double click) does not
// replace the set just shown, which the user may have saved by then.
func pageRegenerateCodes(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		// A form without a set of the user's (one from before the set was
		// part of it) is mfa.ErrBackupCodesFormStale: the page is shown
		// again, with the form as it is now.
		codes, err := svc.RegenerateBackupCodesOnce(r.Context(), u, r.PostFormValue("password"), r.PostFormValue("set"), k.client(r))
		if errors.Is(err, mfa.ErrBackupCodesReplaced) {
			renderCodesReplaced(k, svc, w, r, u)
			return
		}
		if err != nil {
			status, msg := k.formProblem(w, r, err)
			renderSecurity(k, svc, w, r, status, u, "", msg)
			return
		}
		renderCodes(k, w, r, u, svc.Issuer(), "Your new backup codes",
			"Your previous backup codes no longer work. Each of these codes lets you sign in once. "+
				"Keep them somewhere safe: this is the only time they are shown.",
			"/settings/security", codes)
	})
}

// renderCodesReplaced answers a Show Codes form whose set was replaced
// since it was shown, with the form for the set now current: the codes
// already shown are not replaced without the user asking again.
func renderCodesReplaced(k *kit, svc *mfa.Service, w http.ResponseWriter, r *http.Request, u *mfa.User) {
	st, err := svc.Status(r.Context(), u.ID)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	if !st.TwoFactorEnabled { // turned off meanwhile, in another tab
		redirect(w, r, "/settings/security?msg=not_enabled")
		return
	}
	k.render(w, r, http.StatusConflict, "codes_replaced", &codesReplacedPage{
		layout: layout{Title: "Backup codes replaced already", User: u, Error: mfa.ErrBackupCodesReplaced.Message},
		Set:    st.BackupCodeSet,
	})
}

// renderCodes shows backup codes, once. The download is a data: link made
// here, so the codes never need to be kept to be fetched again. The file
// names the service (the issuer, as in the authenticator app), so that a
// user of two services knows which file is which.
func renderCodes(k *kit, w http.ResponseWriter, r *http.Request, u *mfa.User, issuer, heading, intro, done string, codes []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s backup codes for %s\n", issuer, u.Email)
	fmt.Fprintf(&b, "Created %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("Each code works once. Keep them somewhere safe.\n\n")
	for _, c := range codes {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	k.render(w, r, http.StatusOK, "codes", &codesPage{
		layout:   layout{Title: heading, User: u},
		Heading:  heading,
		Intro:    intro,
		Codes:    codes,
		Download: template.URL("data:text/plain;charset=utf-8," + url.PathEscape(b.String())),
		FileName: codesFileName(issuer),
		Done:     done,
	})
}

// codesFileName names the download of backup codes after the issuer, in
// lower-case letters and digits joined by hyphens.
func codesFileName(issuer string) string {
	words := strings.FieldsFunc(strings.ToLower(issuer), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	return strings.Join(append(words, "backup", "codes"), "-") + ".txt"
}

// Turning two-factor authentication off.

func pageDisable(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		st, err := svc.Status(r.Context(), u.ID)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		if !st.TwoFactorEnabled {
			redirect(w, r, "/settings/security?msg=not_enabled")
			return
		}
		k.render(w, r, http.StatusOK, "disable", &disablePage{
			layout: layout{Title: "Turn off two-factor authentication", User: u},
		})
	})
}

const passwordTitle = "Change your password"

func pagePassword(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		k.render(w, r, http.StatusOK, "password", &passwordPage{layout: layout{Title: passwordTitle, User: u}})
	})
}

var errPasswordsDiffer = mfa.Errorf(mfa.KindInvalid, "passwords_differ",
	"The two new passwords are not the same. Type the new password twice.")

func pagePasswordSubmit(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		var (
			token string
			err   error = errPasswordsDiffer
		)
		if next := r.PostFormValue("new_password"); next == r.PostFormValue("repeat_password") {
			token, err = svc.ChangePassword(r.Context(), u, r.PostFormValue("current_password"), next, k.client(r))
		}
		if err != nil {
			status, msg := k.formProblem(w, r, err)
			k.render(w, r, status, "password", &passwordPage{layout: layout{Title: passwordTitle, User: u, Error: msg}})
			return
		}
		k.setToken(w, r, token)
		redirect(w, r, "/settings/security?msg=password_changed")
	})
}

var errNotUnderstood = mfa.Errorf(mfa.KindInvalid, "confirmation_required",
	"Tick the box to confirm that your account will be protected by your password only.")

func pageDisableSubmit(k *kit, svc *mfa.Service) http.Handler {
	return withPageUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		if err := parseForm(r); err != nil {
			k.fail(w, r, err)
			return
		}
		var (
			token string
			err   error = errNotUnderstood
		)
		if r.PostFormValue("understand") == "yes" {
			token, err = svc.DisableTwoFactor(r.Context(), u, r.PostFormValue("password"), k.client(r))
		}
		if errors.Is(err, mfa.ErrNotEnabled) {
			redirect(w, r, "/settings/security?msg=not_enabled")
			return
		}
		if err != nil {
			status, msg := k.formProblem(w, r, err)
			k.render(w, r, status, "disable", &disablePage{
				layout: layout{Title: "Turn off two-factor authentication", User: u, Error: msg},
			})
			return
		}
		k.replaceToken(w, r, token)
		redirect(w, r, "/settings/security?msg=disabled")
	})
}
