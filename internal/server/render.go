package server

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"github.com/twofold/twofold/internal/mfa"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pageTemplate is one page: the layout with the page's "content" block.
type pageTemplate struct{ t *template.Template }

// mustParsePages parses every page with the layout, once, at start-up.
func mustParsePages() map[string]*pageTemplate {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := make(map[string]*pageTemplate)
	for _, file := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(file, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t := template.Must(template.New(name).ParseFS(templateFS, "templates/layout.html", file))
		pages[name] = &pageTemplate{t: t}
	}
	return pages
}

// layout is what the layout template needs; every page's data embeds it.
type layout struct {
	Title string
	User  *mfa.User // signed in; nil on the sign-in pages
	Flash string    // a fixed message chosen by ?msg=
	Error string    // what went wrong with the form, shown with role="alert"
}

// render executes a page into a buffer first, so that a template error
// becomes a clean 500 rather than half a page.
func (k *kit) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	p, ok := k.pages[name]
	var buf bytes.Buffer
	if !ok {
		k.log.ErrorContext(r.Context(), "no such page template", "page", name)
		http.Error(w, internalProblem.message, http.StatusInternalServerError)
		return
	}
	if err := p.t.ExecuteTemplate(&buf, "layout", data); err != nil {
		k.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, internalProblem.message, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// formProblem prepares the re-rendering of a form after err: it sets
// Retry-After when due and returns the status and the message to show.
func (k *kit) formProblem(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	p := k.problemOf(r, err)
	p.setRetryAfter(w)
	return p.status, p.message
}

// flashes are the only messages a ?msg= parameter can show: a key picks
// one, so nothing a link carries is ever reflected into a page.
var flashes = map[string]string{
	"expired":          "Your sign-in has expired. Please sign in again.",
	"signed_out":       "You have signed out.",
	"account_created":  "Your account has been created. Sign in to continue.",
	"enabled":          "Two-factor authentication is on. You will be asked for a code from your authenticator app each time you sign in. Every other session of your account has been signed out.",
	"disabled":         "Two-factor authentication is off. Your account is now protected by your password only. Every other session of your account has been signed out.",
	"not_enabled":      "Two-factor authentication is not enabled.",
	"already_enabled":  "Two-factor authentication is already enabled.",
	"codes_shown_once": "Two-factor authentication is on. Its backup codes were shown once, when you turned it on, and are not shown again. If you did not keep them, use Show Codes to make a new set.",
	"password_changed": "Your password has been changed. Every other session of your account has been signed out.",
}

func flash(r *http.Request) string { return flashes[r.URL.Query().Get("msg")] }

// redirect answers with a 303 See Other to a fixed local path.
func redirect(w http.ResponseWriter, r *http.Request, path string) {
	http.Redirect(w, r, path, http.StatusSeeOther)
}

func handleStatic() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
