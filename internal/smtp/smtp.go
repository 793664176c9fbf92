// Package smtp delivers the notices of package mfa by email: a Mailer hands
// each notice to an SMTP server, a relay such as Postfix or a provider's
// submission port.
//
// The connection is encrypted, by STARTTLS (smtp://) or from the first byte
// (smtps://), and the server's certificate verified; only a relay on this
// machine (localhost or a loopback address), given no password, is spoken
// to in plain text.
package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twofold/twofold/internal/mfa"
)

// defaultTimeout bounds one delivery when Config.Timeout is zero.
const defaultTimeout = 30 * time.Second

// Config says where and how a Mailer sends.
type Config struct {
	// URL is smtp://[USER:PASSWORD@]HOST[:PORT], STARTTLS on port 587 by
	// default, or smtps://[USER:PASSWORD@]HOST[:PORT], TLS from the first
	// byte on port 465 by default. With a user, the Mailer logs in with
	// AUTH PLAIN, over TLS only.
	URL string
	// From is the sender, as in "twofold <no-reply@example.com>".
	From string
	// TLS, if not nil, is used for the connection (a copy of it); nil
	// means the system's roots. An empty ServerName is the URL's host.
	TLS *tls.Config
	// Timeout bounds each delivery, as does the context given to Notify:
	// defaultTimeout if zero.
	Timeout time.Duration
}

// A Mailer is an mfa.Notifier that emails each notice through an SMTP
// server. It holds no connection between notices, so it may be used by
// several goroutines at once.
type Mailer struct {
	implicitTLS bool   // smtps://
	host        string // as in the URL, without brackets
	addr        string // host:port
	// local says that the server is on this machine, where plain text
	// crosses no network.
	local     bool
	user      string
	password  string
	from      *mail.Address
	domain    string // of From, for Message-IDs
	tlsConfig *tls.Config
	timeout   time.Duration
	helo      string // the name given in EHLO
	// dial opens the TCP connection; tests point it at a fake server
	// under a name that is not this machine's.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

var _ mfa.Notifier = (*Mailer)(nil)

// New checks cfg and returns a Mailer that sends as it says. It connects
// to nothing: a wrong password or an unreachable server shows at the first
// Notify.
func New(cfg Config) (*Mailer, error) {
	m := &Mailer{dial: (&net.Dialer{}).DialContext}
	if err := m.parseURL(cfg.URL); err != nil {
		return nil, err
	}

	if strings.TrimSpace(cfg.From) == "" {
		return nil, errors.New("smtp: From is empty: want an address such as \"twofold <no-reply@example.com>\"")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("smtp: From %q: %w", cfg.From, err)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at < 0 || at == len(from.Address)-1 {
		return nil, fmt.Errorf("smtp: From %q: no domain", cfg.From)
	}
	m.from, m.domain = from, from.Address[at+1:]

	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("smtp: Timeout %v: want 0 (the default, %v) or more", cfg.Timeout, defaultTimeout)
	case cfg.Timeout == 0:
		m.timeout = defaultTimeout
	default:
		m.timeout = cfg.Timeout
	}

	if cfg.TLS != nil {
		m.tlsConfig = cfg.TLS.Clone()
	} else {
		m.tlsConfig = &tls.Config{}
	}
	if m.tlsConfig.ServerName == "" {
		m.tlsConfig.ServerName = m.host
	}

	m.helo = "localhost"
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, "\r\n ") {
		m.helo = h
	}
	return m, nil
}

// parseURL sets m's server and credentials from raw. Its errors never
// hold the password.
func (m *Mailer) parseURL(raw string) error {
	const want = "want smtp://[USER:PASSWORD@]HOST[:PORT] or smtps://..."
	if raw == "" {
		return errors.New("smtp: URL is empty: " + want)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's errors quote the URL, or the bit of it they choke on:
		// give their reason only when the URL cannot hold a password.
		var uerr *url.Error
		if !strings.Contains(raw, "@") && errors.As(err, &uerr) {
			return fmt.Errorf("smtp: URL: %w", uerr.Err)
		}
		return errors.New("smtp: URL does not parse (not shown, as it may hold a password): " + want)
	}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		m.implicitTLS = true
	default:
		return fmt.Errorf("smtp: URL scheme %q: want smtp or smtps", u.Scheme)
	}
	if u.Opaque != "" {
		return errors.New("smtp: URL has no //: " + want)
	}
	m.host = u.Hostname()
	if m.host == "" {
		return errors.New("smtp: URL has no host: " + want)
	}
	port := u.Port()
	switch {
	case port != "":
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			// Not quoted: a password with an unescaped '/' ends up here.
			return errors.New("smtp: URL port: want a number from 1 to 65535")
		}
	case m.implicitTLS:
		port = "465"
	default:
		port = "587"
	}
	m.addr = net.JoinHostPort(m.host, port)
	// Nothing else is read from a URL: refuse what would be ignored.
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return errors.New("smtp: URL has a path, query or fragment: " + want)
	}
	if u.User != nil {
		m.user = u.User.Username()
		m.password, _ = u.User.Password()
		if m.user == "" || m.password == "" {
			return errors.New("smtp: URL has a user or password without the other: want both or neither")
		}
	}
	m.local = isLocal(m.host)
	return nil
}

// isLocal reports whether host names this machine, where a relay may be
// spoken to in plain text since nothing crosses a network. Only names that
// cannot mean another machine count: not "localhost.example.com", nor
// anything that must be looked up.
func isLocal(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// String describes the server, without credentials, for a log line:
// "smtp://mail.example.com:587 (STARTTLS, AUTH PLAIN)".
func (m *Mailer) String() string {
	scheme, mode := "smtp", "STARTTLS"
	switch {
	case m.implicitTLS:
		scheme, mode = "smtps", "TLS"
	case m.local && m.user == "":
		mode = "plain text, on this machine"
	}
	if m.user != "" {
		mode += ", AUTH PLAIN"
	}
	return scheme + "://" + m.addr + " (" + mode + ")"
}

// Notify emails n to n.To. It returns once the server has accepted the
// message, or with an error: one wrapping mfa.ErrNoticeRefused when n
// cannot be sent, ever (its address or subject is not valid, or the server
// refused it with a 5xx reply), and a *textproto.Error when the server
// said no (see Permanent).
func (m *Mailer) Notify(ctx context.Context, n mfa.Notice) error {
	rcpt, msg, err := m.message(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	return m.send(ctx, rcpt, msg)
}

// Permanent reports whether err holds a permanent SMTP error, a 5xx reply
// (the recipient refused, say), after which trying again the same way
// cannot help; a 4xx reply, or a network error, may go with a later try.
func Permanent(err error) bool {
	var terr *textproto.Error
	return errors.As(err, &terr) && terr.Code >= 500 && terr.Code <= 599
}

// send delivers msg to rcpt, all within ctx.
func (m *Mailer) send(ctx context.Context, rcpt string, msg []byte) error {
	raw, err := m.dial(ctx, "tcp", m.addr)
	if err != nil {
		return opError(ctx, "dial "+m.addr, err)
	}
	defer raw.Close()
	// net/smtp knows no context: the connection gets ctx's deadline, so a
	// server that does not answer cannot hold it longer, and a cancelled
	// ctx moves that deadline to the past.
	deadline, _ := ctx.Deadline() // always set, by Notify
	if err := raw.SetDeadline(deadline); err != nil {
		return opError(ctx, "set deadline", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	conn := raw
	if m.implicitTLS {
		tc := tls.Client(conn, m.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return opError(ctx, "tls handshake with "+m.addr, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return opError(ctx, "greeting from "+m.addr, err)
	}
	defer c.Close()
	if err := c.Hello(m.helo); err != nil {
		return opError(ctx, "ehlo", err)
	}

	_, secure := c.TLSConnectionState()
	// A relay on this machine, without a password, is spoken to in plain
	// text, which crosses no network: its certificate is often a
	// self-signed one that could not be verified.
	plainLocal := m.local && m.user == ""
	if !secure && !plainLocal {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(m.tlsConfig); err != nil {
				return opError(ctx, "starttls", err)
			}
			_, secure = c.TLSConnectionState()
		}
	}
	// Plain text only to this machine, and never a password: an attacker
	// on the way can strip STARTTLS from the server's list.
	if !secure && !plainLocal {
		return fmt.Errorf("smtp: %s does not offer STARTTLS: refusing to send in plain text", m.addr)
	}
	if m.user != "" {
		if ok, mechs := c.Extension("AUTH"); !ok || !hasField(mechs, "PLAIN") {
			return fmt.Errorf("smtp: %s does not offer AUTH PLAIN, needed for the URL's user", m.addr)
		}
		if err := c.Auth(smtp.PlainAuth("", m.user, m.password, m.host)); err != nil {
			return opError(ctx, "auth as "+m.user, err)
		}
	}

	if err := c.Mail(m.from.Address); err != nil {
		return opError(ctx, "mail from", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return refusal(ctx, "rcpt to", err)
	}
	w, err := c.Data()
	if err != nil {
		return refusal(ctx, "data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return opError(ctx, "data", err)
	}
	if err := w.Close(); err != nil {
		return refusal(ctx, "data", err)
	}
	// The server has taken the message: a failed QUIT changes nothing.
	c.Quit()
	return nil
}

// opError words err, from step op of a delivery, wrapping the context's
// error too when ctx's end is what stopped the step.
func opError(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is ctx's, which the poller may see
		// pass a moment before ctx's own timer.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("smtp: %s: %w: %w", op, cerr, err)
	}
	return fmt.Errorf("smtp: %s: %w", op, err)
}

// refusal is opError for the steps that concern this message, where a 5xx
// reply means the server will not take it, ever.
func refusal(ctx context.Context, op string, err error) error {
	if Permanent(err) {
		return fmt.Errorf("smtp: %s: %w: %w", op, mfa.ErrNoticeRefused, err)
	}
	return opError(ctx, op, err)
}

// hasField reports whether the space-separated list s holds f, in any case.
func hasField(s, f string) bool {
	for _, g := range strings.Fields(s) {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

// message returns the envelope recipient and the RFC 5322 message, with
// CRLF line endings, for n; or an error wrapping mfa.ErrNoticeRefused, n
// being unfit to send.
func (m *Mailer) message(n mfa.Notice) (rcpt string, msg []byte, err error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("smtp: notice of event %d: %w: %s", n.EventID, mfa.ErrNoticeRefused, fmt.Sprintf(format, args...))
	}
	// A line break in a header would let its value add headers of its own.
	if strings.ContainsAny(n.To, "\r\n") {
		return "", nil, invalid("To holds a line break")
	}
	to, err := mail.ParseAddress(n.To)
	if err != nil {
		return "", nil, invalid("To %q is not one email address: %v", n.To, err)
	}
	if i := strings.IndexFunc(n.Subject, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(n.Subject[i:])
		return "", nil, invalid("Subject holds control character %U", r)
	}
	if n.At.IsZero() {
		return "", nil, invalid("no time")
	}

	toHeader := to.String()
	if to.Name == "" {
		toHeader = strings.TrimSuffix(strings.TrimPrefix(toHeader, "<"), ">")
	}
	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(fold(name + ": " + value))
		b.WriteString("\r\n")
	}
	header("Date", n.At.Format(time.RFC1123Z))
	header("From", m.from.String())
	header("To", toHeader)
	header("Subject", mime.QEncoding.Encode("utf-8", n.Subject))
	// The same for a notice sent again, so that mail clients can tell.
	header("Message-ID", fmt.Sprintf("<twofold.%d.%d@%s>", n.EventID, n.At.UnixMilli(), m.domain))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	// Asks vacation responders not to answer (RFC 3834).
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	// Quoted-printable keeps every line short and 7-bit, and writes each
	// line break of the body as CRLF.
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(n.Body)); err != nil {
		return "", nil, fmt.Errorf("smtp: notice of event %d: encode body: %w", n.EventID, err)
	}
	if err := qp.Close(); err != nil {
		return "", nil, fmt.Errorf("smtp: notice of event %d: encode body: %w", n.EventID, err)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return to.Address, b.Bytes(), nil
}

// fold breaks a header line before spaces so that its lines are at most
// 78 characters long where its words allow (RFC 5322 section 2.2.3). It
// breaks only before a word, so that no line is blank.
func fold(line string) string {
	const max = 78
	var b strings.Builder
	n := 0 // length of the line being written
	for i, w := range strings.Split(line, " ") {
		if i > 0 {
			if w != "" && n+1+len(w) > max {
				b.WriteString("\r\n")
				n = 0
			}
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}
