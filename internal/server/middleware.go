package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
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

// answerUnmatched serves mux, answering a request that no route takes as
// every other error is answered (a JSON error under /api/, an error page
// elsewhere) instead of in the mux's plain text: 404 for an unknown path,
// 405 with the mux's Allow header for a known path and another method.
func answerUnmatched(mux *http.ServeMux, k *kit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" { // a route, or a redirect to one
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own answer tells 404 from 405 and gives Allow; only
		// these are kept.
		rec := &statusRecorder{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		p := problem{status: http.StatusNotFound, code: "not_found", message: "There is nothing at this address."}
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			p = problem{status: rec.status, code: "method_not_allowed",
				message: fmt.Sprintf("This address does not take %s requests.", r.Method)}
		}
		k.writeProblem(w, r, p)
	})
}

// statusRecorder is a ResponseWriter that keeps the status and the headers
// and drops the body.
type statusRecorder struct {
	header http.Header
	status int
	wrote  bool
}

func (s *statusRecorder) Header() http.Header { return s.header }

func (s *statusRecorder) WriteHeader(status int) {
	if !s.wrote {
		s.status, s.wrote = status, true
	}
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}
