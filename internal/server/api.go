package server

import (
	"encoding/base64"
	"net/http"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// The JSON API. Every handler decodes a request, makes one Service call and
// encodes its outcome; failures go through kit.fail. See docs/api.md.

// withAPIUser runs next for a fully signed-in user and answers 401
// otherwise; a session that has passed only the password is not signed in.
func withAPIUser(k *kit, svc *mfa.Service, next func(w http.ResponseWriter, r *http.Request, u *mfa.User)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, u, err := svc.Authenticate(r.Context(), k.token(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		next(w, r, u)
	})
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type passwordRequest struct {
	Password string `json:"password"`
}

type statusResponse struct {
	Status  string       `json:"status"`
	Methods []mfa.Method `json:"methods,omitempty"`
}

type backupCodesResponse struct {
	BackupCodes []string `json:"backup_codes"`
}

func apiSignup(k *kit, svc *mfa.Service, open bool) http.Handler {
	type response struct {
		Email string `json:"email"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !open {
			k.fail(w, r, mfa.ErrSignupClosed)
			return
		}
		var req credentials
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		u, err := svc.SignUp(r.Context(), req.Email, req.Password, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.writeJSON(w, r, http.StatusCreated, response{Email: u.Email})
	})
}

func apiLogin(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req credentials
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		res, err := svc.Login(r.Context(), req.Email, req.Password, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.signIn(w, r, svc, res.Token)
		if res.SecondFactorRequired() {
			k.writeJSON(w, r, http.StatusOK, statusResponse{Status: "second_factor_required", Methods: res.Methods})
			return
		}
		k.writeJSON(w, r, http.StatusOK, statusResponse{Status: "authenticated"})
	})
}

func apiSecondFactor(k *kit, svc *mfa.Service) http.Handler {
	type request struct {
		Method mfa.Method `json:"method"`
		Code   string     `json:"code"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		res, err := svc.VerifySecondFactor(r.Context(), k.token(r), req.Method, req.Code, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.setToken(w, r, res.Token)
		k.writeJSON(w, r, http.StatusOK, statusResponse{Status: "authenticated"})
	})
}

func apiLogout(k *kit, svc *mfa.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := k.endSession(w, r, svc); err != nil {
			k.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func apiMe(k *kit, svc *mfa.Service) http.Handler {
	type response struct {
		Email                string `json:"email"`
		TwoFactorEnabled     bool   `json:"two_factor_enabled"`
		BackupCodesRemaining int    `json:"backup_codes_remaining"`
	}
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		st, err := svc.Status(r.Context(), u.ID)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.writeJSON(w, r, http.StatusOK, response{
			Email:                u.Email,
			TwoFactorEnabled:     st.TwoFactorEnabled,
			BackupCodesRemaining: st.BackupCodesRemaining,
		})
	})
}

func apiBeginTOTP(k *kit, svc *mfa.Service) http.Handler {
	type response struct {
		Secret     string `json:"secret"`
		OTPAuthURI string `json:"otpauth_uri"`
		QRPNG      string `json:"qr_png"` // base64 (standard, padded) PNG
	}
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		var req passwordRequest
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		enr, err := svc.BeginTOTP(r.Context(), u, req.Password, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		code, err := newQRCode(enr.URI)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.writeJSON(w, r, http.StatusOK, response{
			Secret:     enr.Secret,
			OTPAuthURI: enr.URI,
			QRPNG:      base64.StdEncoding.EncodeToString(code.PNG),
		})
	})
}

func apiConfirmTOTP(k *kit, svc *mfa.Service) http.Handler {
	type request struct {
		Code string `json:"code"`
	}
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		var req request
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		codes, token, err := svc.ConfirmTOTP(r.Context(), u, req.Code, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.replaceToken(w, r, token)
		k.writeJSON(w, r, http.StatusOK, backupCodesResponse{BackupCodes: codes})
	})
}

func apiRegenerateBackupCodes(k *kit, svc *mfa.Service) http.Handler {
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		var req passwordRequest
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		codes, err := svc.RegenerateBackupCodes(r.Context(), u, req.Password, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.writeJSON(w, r, http.StatusOK, backupCodesResponse{BackupCodes: codes})
	})
}

func apiDisableTwoFactor(k *kit, svc *mfa.Service) http.Handler {
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		var req passwordRequest
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		token, err := svc.DisableTwoFactor(r.Context(), u, req.Password, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.replaceToken(w, r, token)
		w.WriteHeader(http.StatusNoContent)
	})
}

type passwordChangeRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// apiChangePassword answers 204 with a new session cookie: every session of
// the user, this one included, has ended.
func apiChangePassword(k *kit, svc *mfa.Service) http.Handler {
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		var req passwordChangeRequest
		if err := decodeJSON(r, &req); err != nil {
			k.fail(w, r, err)
			return
		}
		token, err := svc.ChangePassword(r.Context(), u, req.CurrentPassword, req.NewPassword, k.client(r))
		if err != nil {
			k.fail(w, r, err)
			return
		}
		k.setToken(w, r, token)
		w.WriteHeader(http.StatusNoContent)
	})
}

// eventLimit is how many recent events the API and the security page show.
const eventLimit = 50

func apiEvents(k *kit, svc *mfa.Service) http.Handler {
	type event struct {
		Type   mfa.EventType `json:"type"`
		At     string        `json:"at"`
		IP     string        `json:"ip"`
		Detail string        `json:"detail"`
	}
	type response struct {
		Events []event `json:"events"`
	}
	return withAPIUser(k, svc, func(w http.ResponseWriter, r *http.Request, u *mfa.User) {
		evs, err := svc.Events(r.Context(), u.ID, eventLimit)
		if err != nil {
			k.fail(w, r, err)
			return
		}
		out := response{Events: make([]event, 0, len(evs))}
		for _, e := range evs {
			out.Events = append(out.Events, event{
				Type: e.Type, At: e.At.UTC().Format(time.RFC3339), IP: e.IP, Detail: e.Detail,
			})
		}
		k.writeJSON(w, r, http.StatusOK, out)
	})
}

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok"))
	})
}
