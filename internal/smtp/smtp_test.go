package smtp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/twofold/twofold/internal/mfa"
)

const (
	testUser     = "mailer"
	testPassword = "s3cr3t-Pa55"
	// portLikePassword, before an unescaped '/', reads as a port.
	portLikePassword = "12345678"
	testFrom         = "twofold <no-reply@example.com>"
)

// testNotice has what a notice may hold that is hard to carry: a long
// non-ASCII subject, and in the body non-ASCII text, a long line, trailing
// space, "=" and lines that begin with a dot, one of them alone.
func testNotice() mfa.Notice {
	return mfa.Notice{
		EventID: 42,
		At:      time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.FixedZone("CET", 3600)),
		To:      "Zoë Example <zoe@example.org>",
		Subject: "twofold: la double authentification a été désactivée sur votre compte, vérifiez-le",
		Body: "Bonjour Zoë,\n\nLa double authentification a été désactivée : ✓ 名前\n" +
			strings.Repeat("a long line that goes on ", 12) + "end\n" +
			".\n" +
			".. a line that begins with a dot\n" +
			"=?utf-8?q?not_a_header?= a = sign and trailing space \n" +
			"\n-- \ntwofold\n",
	}
}

// The Message-ID and Date of testNotice.
const (
	testMessageID = "<twofold.42.1773497366535@example.com>"
	testDate      = "Sat, 14 Mar 2026 15:09:26 +0100"
)

// testCert returns a certificate for 127.0.0.1, localhost and
// mail.example.com, and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "twofold test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost", "mail.example.com"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// serverOptions say how a fakeServer behaves.
type serverOptions struct {
	startTLS    bool // offer STARTTLS
	implicitTLS bool // TLS from the first byte
	noAuth      bool // offer no AUTH
	cert        tls.Certificate
}

// A fakeServer is a real SMTP server, go-smtp's, that records what it is
// sent. It accepts testUser and testPassword, and refuses some recipients:
// gone@ for good (550), busy@ for now (451), and spam@ at the end of DATA
// (554).
type fakeServer struct {
	addr  string
	conns atomic.Int64 // connections accepted

	mu    sync.Mutex
	helos []string
	auths []authAttempt
	msgs  []received
}

type authAttempt struct {
	user, password string
	tls            bool
}

type received struct {
	from string
	to   []string
	data []byte
	tls  bool
}

func startServer(t *testing.T, opts serverOptions) *fakeServer {
	t.Helper()
	fs := &fakeServer{}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		fs.mu.Lock()
		fs.helos = append(fs.helos, c.Hostname())
		fs.mu.Unlock()
		return &fakeSession{fs: fs, conn: c, noAuth: opts.noAuth}, nil
	}))
	srv.Domain = "fake.test"
	// Lets the server take a password in plain text, so that only the
	// Mailer stands in the way of one.
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{opts.cert}}
	if opts.startTLS {
		srv.TLSConfig = tlsConfig
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs.addr = ln.Addr().String()
	ln = countingListener{ln, &fs.conns}
	if opts.implicitTLS {
		ln = tls.NewListener(ln, tlsConfig)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fs
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func (fs *fakeServer) record() ([]string, []authAttempt, []received) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.helos), slices.Clone(fs.auths), slices.Clone(fs.msgs)
}

type fakeSession struct {
	fs     *fakeServer
	conn   *gosmtp.Conn
	noAuth bool
	from   string
	to     []string
}

func (s *fakeSession) AuthMechanisms() []string {
	if s.noAuth {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, password string) error {
		_, isTLS := s.conn.TLSConnectionState()
		s.fs.mu.Lock()
		s.fs.auths = append(s.fs.auths, authAttempt{user, password, isTLS})
		s.fs.mu.Unlock()
		if user != testUser || password != testPassword {
			return gosmtp.ErrAuthFailed
		}
		return nil
	}), nil
}

func (s *fakeSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "gone@"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "busy@"):
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(s.to, func(to string) bool { return strings.HasPrefix(to, "spam@") }) {
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "looks like spam"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.fs.mu.Lock()
	s.fs.msgs = append(s.fs.msgs, received{s.from, s.to, data, isTLS})
	s.fs.mu.Unlock()
	return nil
}

func (s *fakeSession) Reset()        { s.from, s.to = "", nil }
func (s *fakeSession) Logout() error { return nil }

// newMailer returns New(cfg), failing t on an error; if fs is not nil, the
// Mailer dials fs whatever host its URL names.
func newMailer(t *testing.T, cfg Config, fs *fakeServer) *Mailer {
	t.Helper()
	if cfg.From == "" {
		cfg.From = testFrom
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if fs != nil {
		m.dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fs.addr)
		}
	}
	return m
}

func wantHelo() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// TestNotifyDelivers sends testNotice over TLS, with a password, and reads
// what the server received as a mail client would.
func TestNotifyDelivers(t *testing.T) {
	cert, roots := testCert(t)
	tests := []struct {
		name   string
		scheme string
		opts   serverOptions
	}{
		{"STARTTLS", "smtp", serverOptions{startTLS: true, cert: cert}},
		{"smtps", "smtps", serverOptions{implicitTLS: true, cert: cert}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := startServer(t, tt.opts)
			url := fmt.Sprintf("%s://%s:%s@%s", tt.scheme, testUser, testPassword, fs.addr)
			m := newMailer(t, Config{URL: url, TLS: &tls.Config{RootCAs: roots}}, nil)
			n := testNotice()
			if err := m.Notify(context.Background(), n); err != nil {
				t.Fatalf("Notify: %v", err)
			}

			helos, auths, msgs := fs.record()
			if want := []authAttempt{{testUser, testPassword, true}}; !slices.Equal(auths, want) {
				t.Errorf("got AUTH %+v, want %+v", auths, want)
			}
			if len(helos) == 0 || helos[len(helos)-1] != wantHelo() {
				t.Errorf("got EHLO names %q, want the last %q", helos, wantHelo())
			}
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1", len(msgs))
			}
			got := msgs[0]
			if !got.tls {
				t.Errorf("got the message in plain text, want over TLS")
			}
			if got.from != "no-reply@example.com" {
				t.Errorf("got MAIL FROM %q, want %q", got.from, "no-reply@example.com")
			}
			if want := []string{"zoe@example.org"}; !slices.Equal(got.to, want) {
				t.Errorf("got RCPT TO %q, want %q", got.to, want)
			}
			checkMessage(t, got.data, n)
		})
	}
}

// checkMessage checks that raw is n as a mail client would read it.
func checkMessage(t *testing.T, raw []byte, n mfa.Notice) {
	t.Helper()
	// Encoded words and quoted-printable keep the message 7-bit, for
	// servers without 8BITMIME.
	if i := bytes.IndexFunc(raw, func(r rune) bool { return r >= 0x80 }); i >= 0 {
		t.Errorf("got a byte past ASCII at %d, in %q, want none", i, raw[max(0, i-20):min(len(raw), i+20)])
	}
	for i, line := range strings.SplitAfter(string(raw), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\r\n") {
			t.Errorf("line %d %q: got no CRLF at its end, want one", i+1, line)
		}
		if len(line) > 78+2 {
			t.Errorf("line %d %q: got %d characters, want at most 78", i+1, line, len(line)-2)
		}
	}

	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v\n%s", err, raw)
	}
	h := msg.Header
	wantHeaders := map[string]string{
		"Date":                      testDate,
		"Message-Id":                testMessageID,
		"Mime-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
		"Auto-Submitted":            "auto-generated",
	}
	for name, want := range wantHeaders {
		if got := h[name]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s: got %q, want [%q]", name, got, want)
		}
	}
	var names []string
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	wantNames := []string{"Auto-Submitted", "Content-Transfer-Encoding", "Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("got headers %q, want %q", names, wantNames)
	}
	var dec mime.WordDecoder
	if got, err := dec.DecodeHeader(h.Get("Subject")); err != nil || got != n.Subject {
		t.Errorf("Subject: got %q (%v), want %q", got, err, n.Subject)
	}
	if got, err := h.Date(); err != nil || !got.Equal(n.At.Truncate(time.Second)) {
		t.Errorf("Date: got %v (%v), want %v", got, err, n.At.Truncate(time.Second))
	}
	if got, err := h.AddressList("From"); err != nil || len(got) != 1 || got[0].Name != "twofold" || got[0].Address != "no-reply@example.com" {
		t.Errorf("From: got %v (%v), want twofold <no-reply@example.com>", got, err)
	}
	if got, err := h.AddressList("To"); err != nil || len(got) != 1 || got[0].Name != "Zoë Example" || got[0].Address != "zoe@example.org" {
		t.Errorf("To: got %v (%v), want Zoë Example <zoe@example.org>", got, err)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	if got := strings.ReplaceAll(string(body), "\r\n", "\n"); got != n.Body {
		t.Errorf("body:\ngot  %q\nwant %q", got, n.Body)
	}
}

// TestNotifyPlainText checks when a Mailer speaks without TLS: only to a
// relay on this machine, and never with a password.
func TestNotifyPlainText(t *testing.T) {
	cert, roots := testCert(t)
	tests := []struct {
		name     string
		host     string // in the URL; the Mailer dials the fake server all the same
		password bool
		opts     serverOptions
		untrust  bool // trust not the server's certificate
		wantErr  string
		wantTLS  bool
	}{
		{name: "remote without STARTTLS", host: "mail.example.com",
			wantErr: "does not offer STARTTLS"},
		{name: "remote without STARTTLS, with password", host: "mail.example.com", password: true,
			wantErr: "does not offer STARTTLS"},
		{name: "remote with STARTTLS", host: "mail.example.com",
			opts: serverOptions{startTLS: true}, wantTLS: true},
		{name: "remote with STARTTLS, with password", host: "mail.example.com", password: true,
			opts: serverOptions{startTLS: true}, wantTLS: true},
		{name: "remote with STARTTLS, untrusted certificate", host: "mail.example.com", password: true,
			opts: serverOptions{startTLS: true}, untrust: true, wantErr: "certificate"},
		{name: "remote with STARTTLS, with password, no AUTH", host: "mail.example.com", password: true,
			opts: serverOptions{startTLS: true, noAuth: true}, wantErr: "does not offer AUTH PLAIN"},
		{name: "loopback without STARTTLS", host: "127.0.0.1"},
		{name: "localhost without STARTTLS", host: "localhost"},
		{name: "IPv6 loopback without STARTTLS", host: "[::1]"},
		{name: "loopback without STARTTLS, with password", host: "127.0.0.1", password: true,
			wantErr: "does not offer STARTTLS"},
		{name: "localhost without STARTTLS, with password", host: "localhost", password: true,
			wantErr: "does not offer STARTTLS"},
		// Plain text to this machine without a password, STARTTLS or not:
		// a local relay's certificate is often self-signed.
		{name: "loopback offering STARTTLS, without password", host: "127.0.0.1",
			opts: serverOptions{startTLS: true}, untrust: true, wantTLS: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.cert = cert
			fs := startServer(t, tt.opts)
			userinfo := ""
			if tt.password {
				userinfo = testUser + ":" + testPassword + "@"
			}
			tlsConfig := &tls.Config{RootCAs: roots}
			if tt.untrust {
				tlsConfig = nil
			}
			m := newMailer(t, Config{URL: "smtp://" + userinfo + tt.host + ":25", TLS: tlsConfig}, fs)

			err := m.Notify(context.Background(), testNotice())
			_, auths, msgs := fs.record()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), testPassword) || strings.Contains(err.Error(), portLikePassword) {
					t.Errorf("got error %q, want it without the password", err)
				}
				if len(msgs) != 0 || len(auths) != 0 {
					t.Errorf("got %d messages and AUTH %+v sent, want none", len(msgs), auths)
				}
				return
			}
			if err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1", len(msgs))
			}
			if msgs[0].tls != tt.wantTLS {
				t.Errorf("got message over TLS %v, want %v", msgs[0].tls, tt.wantTLS)
			}
			if tt.password {
				if want := []authAttempt{{testUser, testPassword, true}}; !slices.Equal(auths, want) {
					t.Errorf("got AUTH %+v, want %+v", auths, want)
				}
			} else if len(auths) != 0 {
				t.Errorf("got AUTH %+v, want none", auths)
			}
		})
	}
}

// TestNotifyRefused checks that the server's refusals come back told apart:
// for good (5xx) or for now (4xx).
func TestNotifyRefused(t *testing.T) {
	cert, roots := testCert(t)
	fs := startServer(t, serverOptions{startTLS: true, cert: cert})
	tests := []struct {
		name          string
		password      string
		to            string
		wantCode      int // 0: no error
		wantPermanent bool
		wantRefused   bool // wraps mfa.ErrNoticeRefused
	}{
		{"accepted", testPassword, "ok@example.org", 0, false, false},
		{"recipient refused", testPassword, "gone@example.org", 550, true, true},
		{"recipient deferred", testPassword, "busy@example.org", 451, false, false},
		{"message refused", testPassword, "spam@example.org", 554, true, true},
		// A wrong password is the server's to fix, not the notice's.
		{"wrong password", "wrong-Pa55", "ok@example.org", 535, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fmt.Sprintf("smtp://%s:%s@%s", testUser, tt.password, fs.addr)
			m := newMailer(t, Config{URL: url, TLS: &tls.Config{RootCAs: roots}}, nil)
			n := testNotice()
			n.To = tt.to
			err := m.Notify(context.Background(), n)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("Notify: %v", err)
				}
				return
			}
			var terr *textproto.Error
			if !errors.As(err, &terr) || terr.Code != tt.wantCode {
				t.Fatalf("got error %v, want one with SMTP code %d", err, tt.wantCode)
			}
			if got := Permanent(err); got != tt.wantPermanent {
				t.Errorf("Permanent(%v): got %v, want %v", err, got, tt.wantPermanent)
			}
			if got := errors.Is(err, mfa.ErrNoticeRefused); got != tt.wantRefused {
				t.Errorf("errors.Is(%v, mfa.ErrNoticeRefused): got %v, want %v", err, got, tt.wantRefused)
			}
			if !strings.HasPrefix(err.Error(), "smtp: ") || strings.Contains(err.Error(), tt.password) {
				t.Errorf("got error %q, want it to start with \"smtp: \" and leave out the password", err)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("550 not an SMTP reply"), false},
		{&textproto.Error{Code: 550, Msg: "no such user"}, true},
		{fmt.Errorf("smtp: rcpt to: %w", &textproto.Error{Code: 554, Msg: "refused"}), true},
		{fmt.Errorf("smtp: rcpt to: %w", &textproto.Error{Code: 451, Msg: "later"}), false},
		{&textproto.Error{Code: 421, Msg: "closing"}, false},
		{&textproto.Error{Code: 250, Msg: "ok"}, false},
		{&textproto.Error{Code: 600, Msg: "?"}, false},
		{os.ErrDeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := Permanent(tt.err); got != tt.want {
			t.Errorf("Permanent(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestNotifyRefusesBadNotice checks that a notice whose To or Subject could
// add headers, or is not one address, is refused before any connection.
func TestNotifyRefusesBadNotice(t *testing.T) {
	fs := startServer(t, serverOptions{})
	m := newMailer(t, Config{URL: "smtp://" + fs.addr}, nil)
	tests := []struct {
		name string
		edit func(*mfa.Notice)
	}{
		{"To with CRLF", func(n *mfa.Notice) { n.To = "zoe@example.org\r\nBcc: eve@example.net" }},
		{"To with LF", func(n *mfa.Notice) { n.To = "zoe@example.org\nBcc: eve@example.net" }},
		{"To with CR", func(n *mfa.Notice) { n.To = "zoe@example.org\rBcc: eve@example.net" }},
		{"To with CRLF in the name", func(n *mfa.Notice) { n.To = "\"Zoe\r\nBcc: eve@example.net\" <zoe@example.org>" }},
		{"To with two addresses", func(n *mfa.Notice) { n.To = "zoe@example.org, eve@example.net" }},
		{"To with a group", func(n *mfa.Notice) { n.To = "all: zoe@example.org, eve@example.net;" }},
		{"To not an address", func(n *mfa.Notice) { n.To = "zoe at example.org" }},
		{"To empty", func(n *mfa.Notice) { n.To = "" }},
		{"Subject with CRLF", func(n *mfa.Notice) { n.Subject = "Hello\r\nBcc: eve@example.net" }},
		{"Subject with LF", func(n *mfa.Notice) { n.Subject = "Hello\nBcc: eve@example.net" }},
		{"Subject with CR", func(n *mfa.Notice) { n.Subject = "Hello\rBcc: eve@example.net" }},
		{"non-ASCII Subject with LF", func(n *mfa.Notice) { n.Subject = "Hé\nBcc: eve@example.net" }},
		{"Subject with NUL", func(n *mfa.Notice) { n.Subject = "Hello\x00" }},
		{"no time", func(n *mfa.Notice) { n.At = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testNotice()
			tt.edit(&n)
			err := m.Notify(context.Background(), n)
			if err == nil {
				t.Fatal("got no error, want one")
			}
			if !errors.Is(err, mfa.ErrNoticeRefused) || !strings.HasPrefix(err.Error(), "smtp: ") {
				t.Errorf("got error %q, want one starting \"smtp: \" and wrapping mfa.ErrNoticeRefused", err)
			}
			if strings.Contains(err.Error(), "Bonjour") {
				t.Errorf("got error %q, want it without the body", err)
			}
		})
	}
	if got := fs.conns.Load(); got != 0 {
		t.Errorf("got %d connections to the server, want none", got)
	}
}

// silentServer accepts connections and never says a word.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestNotifyStuckServer checks that a server that never answers cannot
// hold a delivery past its context or Config.Timeout.
func TestNotifyStuckServer(t *testing.T) {
	addr := silentServer(t)
	const short = 200 * time.Millisecond
	tests := []struct {
		name    string
		scheme  string
		timeout time.Duration // Config.Timeout
		ctx     func() (context.Context, context.CancelFunc)
		want    error
	}{
		{"ctx deadline", "smtp", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), short)
		}, context.DeadlineExceeded},
		{"ctx deadline, TLS handshake", "smtps", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), short)
		}, context.DeadlineExceeded},
		{"Config.Timeout", "smtp", short, func() (context.Context, context.CancelFunc) {
			return context.Background(), func() {}
		}, context.DeadlineExceeded},
		// No deadline but an hour's: only the cancellation can end it.
		{"ctx canceled", "smtp", time.Hour, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(short, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMailer(t, Config{URL: tt.scheme + "://" + addr, Timeout: tt.timeout}, nil)
			ctx, cancel := tt.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- m.Notify(ctx, testNotice()) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				// Not a measure of time: a hang would otherwise last
				// until go test's own timeout.
				t.Fatal("Notify has not returned after a minute: a silent server hangs it")
			}
			var nerr net.Error
			isTimeout := errors.As(err, &nerr) && nerr.Timeout()
			if err == nil || !errors.Is(err, tt.want) && !(tt.want == context.DeadlineExceeded && isTimeout) {
				t.Fatalf("got error %v, want one wrapping %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "smtp: ") {
				t.Errorf("got error %q, want it to start with \"smtp: \"", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{From: testFrom}, "smtp: URL is empty"},
		{"http", Config{URL: "http://u:" + testPassword + "@mail.example.com", From: testFrom}, `smtp: URL scheme "http": want smtp or smtps`},
		{"no scheme", Config{URL: "mail.example.com", From: testFrom}, `smtp: URL scheme "": want smtp or smtps`},
		{"no //", Config{URL: "smtp:mail.example.com", From: testFrom}, "smtp: URL has no //"},
		{"no host", Config{URL: "smtp://", From: testFrom}, "smtp: URL has no host"},
		{"port but no host", Config{URL: "smtps://u:" + testPassword + "@:465", From: testFrom}, "smtp: URL has no host"},
		{"port 0", Config{URL: "smtp://mail.example.com:0", From: testFrom}, `smtp: URL port: want a number`},
		{"port too big", Config{URL: "smtp://mail.example.com:65536", From: testFrom}, `smtp: URL port: want a number`},
		// A password with an unescaped '/' reads as a port: not quoted.
		{"password read as a port", Config{URL: "smtp://u:" + portLikePassword + "/x@mail.example.com", From: testFrom}, `smtp: URL port: want a number`},
		{"bad port", Config{URL: "smtp://mail.example.com:x", From: testFrom}, `smtp: URL: invalid port ":x"`},
		{"bad port, password", Config{URL: "smtp://u:" + testPassword + "@mail.example.com:x", From: testFrom}, "smtp: URL does not parse"},
		{"bad escape in password", Config{URL: "smtp://u:" + testPassword + "%zz@mail.example.com", From: testFrom}, "smtp: URL does not parse"},
		{"path", Config{URL: "smtp://u:" + testPassword + "@mail.example.com/x", From: testFrom}, "smtp: URL has a path, query or fragment"},
		{"query", Config{URL: "smtp://mail.example.com?tls=no", From: testFrom}, "smtp: URL has a path, query or fragment"},
		{"fragment", Config{URL: "smtp://mail.example.com#x", From: testFrom}, "smtp: URL has a path, query or fragment"},
		{"user, no password", Config{URL: "smtp://u@mail.example.com", From: testFrom}, "smtp: URL has a user or password without the other"},
		{"password, no user", Config{URL: "smtp://:" + testPassword + "@mail.example.com", From: testFrom}, "smtp: URL has a user or password without the other"},
		{"no From", Config{URL: "smtp://u:" + testPassword + "@mail.example.com"}, "smtp: From is empty"},
		{"bad From", Config{URL: "smtp://u:" + testPassword + "@mail.example.com", From: "no-reply"}, `smtp: From "no-reply"`},
		{"two From", Config{URL: "smtp://mail.example.com", From: "a@example.com, b@example.com"}, `smtp: From "a@example.com, b@example.com"`},
		{"From with CRLF", Config{URL: "smtp://mail.example.com", From: "a@example.com\r\nBcc: b@example.com"}, `smtp: From "a@example.com\r\nBcc: b@example.com"`},
		{"negative Timeout", Config{URL: "smtp://u:" + testPassword + "@mail.example.com", From: testFrom, Timeout: -time.Second}, "smtp: Timeout -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("got %v, want error %q", m, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got error %q, want one starting %q", err, tt.want)
			}
			if strings.Contains(err.Error(), testPassword) || strings.Contains(err.Error(), portLikePassword) {
				t.Errorf("got error %q, want it without the password", err)
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"smtp://u:" + testPassword + "@mail.example.com", "smtp://mail.example.com:587 (STARTTLS, AUTH PLAIN)"},
		{"smtp://mail.example.com:25/", "smtp://mail.example.com:25 (STARTTLS)"},
		{"smtps://mail.example.com", "smtps://mail.example.com:465 (TLS)"},
		{"SMTPS://u:" + testPassword + "@Mail.Example.com:2465", "smtps://Mail.Example.com:2465 (TLS, AUTH PLAIN)"},
		{"smtp://localhost:25", "smtp://localhost:25 (plain text, on this machine)"},
		{"smtp://[::1]:2525", "smtp://[::1]:2525 (plain text, on this machine)"},
		{"smtp://u:" + testPassword + "@127.0.0.1:25", "smtp://127.0.0.1:25 (STARTTLS, AUTH PLAIN)"},
	}
	for _, tt := range tests {
		m, err := New(Config{URL: tt.url, From: testFrom})
		if err != nil {
			t.Errorf("New(%q): %v", tt.url, err)
			continue
		}
		for _, got := range []string{m.String(), fmt.Sprint(m), fmt.Sprintf("%+v", m)} {
			if got != tt.want {
				t.Errorf("New(%q): got %q, want %q", tt.url, got, tt.want)
			}
		}
	}
}

func TestIsLocal(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"localhost.", true},
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"", false},
		{"mail.example.com", false},
		{"localhost.example.com", false},
		{"mail.localhost", false},
		{"127.0.0.1.example.com", false},
		{"127.1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"10.0.0.1", false},
		{"192.168.1.1", false},
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		if got := isLocal(tt.host); got != tt.want {
			t.Errorf("isLocal(%q): got %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestFold(t *testing.T) {
	long := "Subject: " + mime.QEncoding.Encode("utf-8", testNotice().Subject)
	tests := []struct {
		line    string
		wantMax int // the longest line at most
	}{
		{"Subject: short", 14},
		{long, 78},
		{"Subject: " + strings.Repeat("word ", 40), 78},
		{"Subject:  two  spaces " + strings.Repeat("x", 70) + "  and more " + strings.Repeat("y", 70), 78},
		// Two spaces where the line is full, then a word that fills the
		// next: one space ends the first line, past 78, none is alone.
		{"Subject: " + strings.Repeat("x", 69) + "  " + strings.Repeat("y", 77), 79},
		// A word longer than a line stays whole: there is nowhere to break it.
		{"To: " + strings.Repeat("z", 100) + "@example.org", 116},
	}
	for _, tt := range tests {
		got := fold(tt.line)
		if unfolded := strings.ReplaceAll(got, "\r\n", ""); unfolded != tt.line {
			t.Errorf("fold(%q): got %q, which unfolds to %q, want the line back", tt.line, got, unfolded)
		}
		lines := strings.Split(got, "\r\n")
		longest := 0
		for i, l := range lines {
			longest = max(longest, len(l))
			if i > 0 && (!strings.HasPrefix(l, " ") || strings.TrimSpace(l) == "") {
				t.Errorf("fold(%q): got continuation line %q, want one starting with a space and not blank", tt.line, l)
			}
		}
		if longest > tt.wantMax {
			t.Errorf("fold(%q): got a line of %d characters, want at most %d", tt.line, longest, tt.wantMax)
		}
	}
}
