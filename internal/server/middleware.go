package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
)

// maxBodyBytes bounds every request body: forms and JSON here are tiny.
const maxBodyBytes = 64 << 10

// contentSecurityPolicy allows no script at all, styles and images only from
// this origin (and the QR code as a data: image), forms only to this origin,
// and no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every response carries. Cache-Control is
// no-store on everything; the static files handler overrides it.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// limitBody caps the size of request bodies.
func limitBody(next http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic into a logged 500 answer.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &watchWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.ErrorContext(r.Context(), "panic", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rw.wrote {
				return // too late to change the answer
			}
			if isAPI(r) {
				rw.Header().Set("Content-Type", "application/json; charset=utf-8")
				rw.WriteHeader(http.StatusInternalServerError)
				fmt.Fprintf(rw, `{"error":{"code":%q,"message":%q}}`+"\n", internalProblem.code, internalProblem.message)
				return
			}
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rw.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintln(rw, internalProblem.message)
		}()
		next.ServeHTTP(rw, r)
	})
}

// watchWriter records whether the response has started.
type watchWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *watchWriter) WriteHeader(status int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *watchWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *watchWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// unmatched answers the requests that no other route takes, as every other
// error is answered (a JSON error under /api/, an error page elsewhere)
// instead of in the mux's plain text: 405 with Allow for a known path and
// another method, 404 otherwise. It is the route of "/", so it costs the
// routed requests nothing.
func unmatched(mux *http.ServeMux, k *kit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			k.writeProblem(w, r, problem{status: http.StatusNotFound, code: "not_found", message: "There is nothing at this address."})
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		k.writeProblem(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			message: fmt.Sprintf("This address does not take %s requests.", r.Method)})
	})
}
