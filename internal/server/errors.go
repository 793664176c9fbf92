package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// statusOf maps each domain error kind to its HTTP status: the one place
// where the two meet.
var statusOf = map[mfa.Kind]int{
	mfa.KindInternal:        http.StatusInternalServerError,
	mfa.KindInvalid:         http.StatusBadRequest,
	mfa.KindUnauthenticated: http.StatusUnauthorized,
	mfa.KindForbidden:       http.StatusForbidden,
	mfa.KindNotFound:        http.StatusNotFound,
	mfa.KindConflict:        http.StatusConflict,
	mfa.KindRateLimited:     http.StatusTooManyRequests,
	mfa.KindUnavailable:     http.StatusServiceUnavailable,
}

// httpError is an error of the HTTP layer itself, whose status no mfa.Kind
// names (a body too large, a body that is not JSON).
type httpError struct {
	status  int
	code    string
	message string
}

func (e *httpError) Error() string { return e.code + ": " + e.message }

var (
	errTooLarge = &httpError{http.StatusRequestEntityTooLarge, "request_too_large",
		fmt.Sprintf("The request body is larger than %d KiB.", maxBodyBytes/1024)}
	errNotJSON = &httpError{http.StatusUnsupportedMediaType, "unsupported_media_type",
		"Send the request body as JSON, with the header Content-Type: application/json."}
	errCrossOrigin = &httpError{http.StatusForbidden, "cross_origin_request",
		"Cross-origin requests are not allowed."}
)

// invalidRequest is the answer to a request body that does not parse.
func invalidRequest(format string, args ...any) error {
	return mfa.Errorf(mfa.KindInvalid, "invalid_request", format, args...)
}

// problem is an error as the client sees it.
type problem struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
}

// internalProblem never tells the client what went wrong; the log does.
var internalProblem = problem{
	status:  http.StatusInternalServerError,
	code:    "internal_error",
	message: "Something went wrong on our side. Please try again in a moment.",
}

// problemOf turns err into what the client is told, logging what the client
// is not told. Any error that is neither an *mfa.Error nor an *httpError is
// a fault of the server.
func (k *kit) problemOf(r *http.Request, err error) problem {
	var he *httpError
	if errors.As(err, &he) {
		return problem{status: he.status, code: he.code, message: he.message}
	}
	var e *mfa.Error
	if !errors.As(err, &e) || e.Kind == mfa.KindInternal {
		k.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		return internalProblem
	}
	status, ok := statusOf[e.Kind]
	if !ok {
		k.log.ErrorContext(r.Context(), "unknown error kind", "method", r.Method, "path", r.URL.Path, "err", err)
		return internalProblem
	}
	if e.Kind == mfa.KindUnavailable {
		k.log.WarnContext(r.Context(), "service unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	p := problem{status: status, code: e.Code, message: e.Message}
	if e.Kind == mfa.KindRateLimited || e.Kind == mfa.KindUnavailable {
		p.retryAfter = e.RetryAfter
		if p.retryAfter <= 0 {
			p.retryAfter = time.Second
		}
	}
	return p
}

// setRetryAfter writes the Retry-After header, in whole seconds rounded up.
func (p problem) setRetryAfter(w http.ResponseWriter) {
	if p.retryAfter > 0 {
		secs := int64((p.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
}

// isAPI reports whether r is an API request, answered in JSON.
func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// fail answers err: a JSON error body for the API, an error page otherwise.
func (k *kit) fail(w http.ResponseWriter, r *http.Request, err error) {
	k.writeProblem(w, r, k.problemOf(r, err))
}

func (k *kit) writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	p.setRetryAfter(w)
	if isAPI(r) {
		type body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		var b body
		b.Error.Code, b.Error.Message = p.code, p.message
		k.writeJSON(w, r, p.status, b)
		return
	}
	k.render(w, r, p.status, "error", &errorPage{
		layout:  layout{Title: http.StatusText(p.status)},
		Message: p.message,
	})
}

// writeJSON writes v as the JSON body of a response.
func (k *kit) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		k.log.ErrorContext(r.Context(), "encode json", "path", r.URL.Path, "err", err)
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal_error","message":"Something went wrong on our side."}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decodeJSON reads a request body holding one JSON object into v, a
// pointer to a request struct. Every field of v is required: a field left
// out (or null) is a malformed request, not an empty password or code to be
// checked, and counted as a failure. Every way it can fail is the client's
// mistake: 400, 413 or 415, never 500.
func decodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errNotJSON
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return invalidRequest("The request body must hold a single JSON object.")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return jsonError(err)
	}
	for _, name := range requiredFields(reflect.TypeOf(v).Elem()) {
		if !hasField(fields, name) {
			return invalidRequest("The field %q is missing.", name)
		}
	}
	return nil
}

// requiredFieldsOf holds requiredFields' answer for each request type, so
// that a request pays for no reflection: it is on the sign-in path.
var requiredFieldsOf sync.Map // reflect.Type → []string

// requiredFields lists the JSON names of the fields of t, a request struct:
// its exported fields that JSON does not skip.
func requiredFields(t reflect.Type) []string {
	if names, ok := requiredFieldsOf.Load(t); ok {
		return names.([]string)
	}
	names, _ := requiredFieldsOf.LoadOrStore(t, fieldNames(t))
	return names.([]string)
}

// fieldNames is requiredFields, worked out.
func fieldNames(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	names := make([]string, 0, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// hasField reports whether fields holds name, not null. Keys match as
// encoding/json matches them to struct fields: ignoring case.
func hasField(fields map[string]json.RawMessage, name string) bool {
	for k, raw := range fields {
		if strings.EqualFold(k, name) && string(raw) != "null" {
			return true
		}
	}
	return false
}

func jsonError(err error) error {
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case errors.Is(err, io.EOF):
		return invalidRequest("The request body is empty: send a JSON object.")
	case errors.As(err, &ute) && ute.Field != "":
		return invalidRequest("The field %q must be a %s.", ute.Field, jsonTypeName(ute.Type.Kind().String()))
	default:
		return invalidRequest("The request body is not a valid JSON object.")
	}
}

func jsonTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice", "array":
		return "list"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	}
	return "number"
}

// parseForm parses a form post, URL-encoded as the pages send it or
// multipart as some clients do, answering a body too large with 413.
func parseForm(r *http.Request) error {
	parse := r.ParseForm
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		// The body is bounded by maxBodyBytes already, so it is held in memory.
		parse = func() error { return r.ParseMultipartForm(maxBodyBytes) }
	}
	if err := parse(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return invalidRequest("The form could not be read. Please try again.")
	}
	return nil
}
