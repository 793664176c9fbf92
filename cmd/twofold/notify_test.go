package main

import (
	"bytes"
	"io"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// receivedMail is a message as an SMTP server received it.
type receivedMail struct {
	from string
	to   []string
	data []byte
}

// mailSession is one SMTP session of startMailbox's server.
type mailSession struct {
	got  chan<- receivedMail
	mail receivedMail
}

func (s *mailSession) Reset()        { s.mail = receivedMail{} }
func (s *mailSession) Logout() error { return nil }
func (s *mailSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.mail.from = from
	return nil
}
func (s *mailSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.mail.to = append(s.mail.to, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mail.data = b
	s.got <- s.mail
	return nil
}

// startMailbox runs an SMTP server on 127.0.0.1, a relay on the same
// machine as the server, until the test ends; it returns its address and
// the messages it receives.
func startMailbox(t *testing.T) (string, <-chan receivedMail) {
	t.Helper()
	got := make(chan receivedMail, 16)
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &mailSession{got: got}, nil
	}))
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), got
}

// TestServeEmailsChanges: a user who turns 2FA on is emailed through the
// mail server given, from the address given; signing in is not a change.
func TestServeEmailsChanges(t *testing.T) {
	data := t.TempDir()
	if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", data, "ann@example.com"); err != nil {
		t.Fatalf("user add: %v: %s", err, msg)
	}
	addr, inbox := startMailbox(t)
	base, out := startServer(t, data, "--smtp-url", "smtp://"+addr, "--mail-from", "Example Panel <no-reply@example.com>")
	if !strings.Contains(out.String(), "emailed when their account's security changes, through smtp://"+addr) {
		t.Errorf("the start-up message does not name the mail server:\n%s", out)
	}

	c := newAPIClient(t, base)
	if code, _ := c.do("POST", "/api/v1/login", map[string]string{"email": "ann@example.com", "password": pw}); code != 200 {
		t.Fatalf("login: status %d", code)
	}
	c.enableTOTP()
	var m receivedMail
	select {
	case m = <-inbox:
	case <-time.After(5 * time.Second): // the change wakes the sender; its poll is 10 s
		t.Fatal("no email within 5 s of turning 2FA on")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.data))
	if err != nil {
		t.Fatalf("the email does not parse: %v\n%s", err, m.data)
	}
	body, _ := io.ReadAll(msg.Body)
	if m.from != "no-reply@example.com" || len(m.to) != 1 || m.to[0] != "ann@example.com" {
		t.Errorf("envelope: from %q to %q, want no-reply@example.com to ann@example.com", m.from, m.to)
	}
	if got, want := msg.Header.Get("Subject"), "twofold: Two-factor authentication turned on"; got != want {
		t.Errorf("Subject: got %q, want %q (the sign-in before is no change)", got, want)
	}
	if got := msg.Header.Get("From"); !strings.Contains(got, "no-reply@example.com") {
		t.Errorf("From: got %q, want the --mail-from address", got)
	}
	if !bytes.Contains(body, []byte("127.0.0.1")) {
		t.Errorf("the body does not name the IP address of the change:\n%s", body)
	}
}

// TestServeMailSettings: mail settings are checked at start, with errors
// that name the flag and keep the password out.
func TestServeMailSettings(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--smtp-url", "smtp://mail.example:587"}, "--mail-from"},
		{[]string{"--mail-from", "no-reply@example.com"}, "--smtp-url"},
		{[]string{"--smtp-url", "http://u:s3cret@mail.example", "--mail-from", "no-reply@example.com"}, "scheme"},
		{[]string{"--smtp-url", "smtp://u:s3cret@mail.example", "--mail-from", "not an address"}, "--mail-from"},
	} {
		out, err := runCmd(t, "", append([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v: got %v, want an error about %s", c.args, err, c.want)
			continue
		}
		if strings.Contains(err.Error()+out, "s3cret") {
			t.Errorf("serve %v: the error shows the password: %v", c.args, err)
		}
	}
}
