package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/twofold/twofold/internal/mfa"
)

// The session cookie holds the session token, for pages and API alike.
// Over HTTPS it takes the __Host- prefix, which binds it to this host and
// path "/" and requires Secure.
const (
	cookieName       = "twofold_session"
	secureCookieName = "__Host-" + cookieName
)

// secure reports whether r reached the user over HTTPS: configured so, over
// TLS, or, behind a trusted proxy, marked so by the proxy.
func (k *kit) secure(r *http.Request) bool {
	return k.secureCookies || r.TLS != nil ||
		(k.trustProxy && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"))
}

func (k *kit) cookieName(r *http.Request) string {
	if k.secure(r) {
		return secureCookieName
	}
	return cookieName
}

// token returns the session token of r, "" if there is none.
func (k *kit) token(r *http.Request) string {
	c, err := r.Cookie(k.cookieName(r))
	if err != nil {
		return ""
	}
	return c.Value
}

// setToken replaces the session cookie with one holding token.
func (k *kit) setToken(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name:     k.cookieName(r),
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		Secure:   k.secure(r),
		SameSite: http.SameSiteLaxMode,
	})
}

// clearToken tells the browser to drop the session cookie.
func (k *kit) clearToken(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     k.cookieName(r),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   k.secure(r),
		SameSite: http.SameSiteLaxMode,
	})
}

// replaceToken gives the client the token of the session that a change to
// its account started, after ending every other; with none started (an
// empty token), the client is signed out.
func (k *kit) replaceToken(w http.ResponseWriter, r *http.Request, token string) {
	if token == "" {
		k.clearToken(w, r)
		return
	}
	k.setToken(w, r, token)
}

// signIn gives the client the token of a new session from Login. A session
// the client held before (another account, or a sign-in left half-way) is
// ended on the server, so it cannot linger unseen.
func (k *kit) signIn(w http.ResponseWriter, r *http.Request, svc *mfa.Service, token string) {
	if old := k.token(r); old != "" && old != token {
		if err := svc.Logout(r.Context(), old, k.client(r)); err != nil {
			k.log.ErrorContext(r.Context(), "end previous session", "err", err)
		}
	}
	k.setToken(w, r, token)
}

// client describes where r came from. The IP is the peer address, or, when
// proxy headers are trusted, the last X-Forwarded-For entry: the one the
// trusted proxy itself added. Entries before it were sent by the client and
// could name any address.
func (k *kit) client(r *http.Request) mfa.Client {
	if k.trustProxy {
		if ip, ok := forwardedFor(r.Header.Values("X-Forwarded-For")); ok {
			return mfa.Client{IP: ip}
		}
	}
	return mfa.Client{IP: remoteIP(r.RemoteAddr)}
}

func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}

// forwardedFor returns the last address of the X-Forwarded-For header lines.
func forwardedFor(lines []string) (string, bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		parts := strings.Split(lines[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			p := strings.TrimSpace(parts[j])
			if p == "" {
				continue
			}
			ip, err := netip.ParseAddr(p)
			if err != nil {
				return "", false
			}
			return ip.Unmap().String(), true
		}
	}
	return "", false
}

// endSession signs r's session out on the server and drops the cookie.
func (k *kit) endSession(w http.ResponseWriter, r *http.Request, svc *mfa.Service) error {
	k.clearToken(w, r)
	if token := k.token(r); token != "" {
		return svc.Logout(r.Context(), token, k.client(r))
	}
	return nil
}
