package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/twofold/twofold/otp"
)

// TestBrowserSeedStory walks the story of the help articles in
// /work/shared/seeds through the HTML pages, in a real headless Chromium:
// a newcomer creates the first account from the link the server prints,
// turns on two-factor authentication from Settings > Account security (QR
// code or key, then a token), saves the backup codes, signs in with a token
// and then with a backup code, turns two-factor authentication off again and
// signs in with the password only. Every step is a click or keystrokes on a
// page; the assertions are on what a person sees.
func TestBrowserSeedStory(t *testing.T) {
	chromium := needTool(t, "chromium", true)
	zbarimg := needTool(t, "zbarimg", false) // reads the QR code as a phone camera would
	const email = "ann@example.com"

	data := t.TempDir()
	base, out := startServer(t, data)
	setupLink := regexp.MustCompile(`http://\S+/setup\?token=\S+`).FindString(out.String())
	if setupLink == "" {
		t.Fatalf("the server printed no first-account link:\n%s", out)
	}
	b := newBrowser(t, chromium, base)

	// 1. The first account, from the link the server printed.
	b.open(setupLink, 200)
	b.expectPage("/setup", "Create the first account")
	b.see("No account exists on this server yet")
	b.typeInto("Email address", email)
	b.typeInto("Password", pw)
	b.submit("Create account")
	b.expectPage("/login", "Sign in")
	b.see("Your account has been created. Sign in to continue.")
	// The link works once.
	b.open(setupLink, 404)
	b.see("This setup link is not valid")

	// 2. Sign in with the password: the dashboard invites to turn on 2FA.
	b.signIn(email, pw)
	b.expectPage("/dashboard", "Dashboard")
	b.see("Signed in as " + email)
	b.see("Protect your account with two-factor authentication")

	// 3. Settings > Account security > Enable, password, then the QR code.
	b.follow("Settings")
	b.expectPage("/settings/security", "Account security")
	b.see("Status: Disabled")
	b.follow("Enable")
	b.expectPage("/settings/2fa/enable", "Confirm your password")
	b.see("Step 1 of 3")
	b.typeInto("Password", pw)
	b.submit("Continue")
	b.expectPage("/settings/2fa/enable", "Scan the QR code")
	b.see("Step 2 of 3")
	if got := b.text(`//dt[normalize-space(.)="Account"]/following-sibling::dd[1]`); got != email {
		b.fatalf("the account beside the QR code: got %q, want %q", got, email)
	}
	b.screenshotForPeople("1-qr-code.png")

	key := b.text(`//dt[normalize-space(.)="Key"]/following-sibling::dd[1]`)
	if !regexp.MustCompile(`^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$`).MatchString(key) {
		b.fatalf("the key beside the QR code: got %q, want base32 in groups of four", key)
	}
	secret, err := otp.DecodeSecret(key)
	if err != nil {
		b.fatalf("the key shown does not decode: %v", err)
	}
	b.checkQRCode(zbarimg, email, secret)

	confirmedAt := time.Now()
	code, err := otp.TOTP(secret, confirmedAt, otp.Params{})
	if err != nil {
		t.Fatal(err)
	}
	b.typeInto("Token", code)
	b.submit("Turn on two-factor authentication")

	// 4. The backup codes, shown once.
	b.expectPage("/settings/2fa/confirm", "Save your backup codes")
	b.see("Two-factor authentication is now on.")
	backupCodes := b.backupCodes()
	b.checkDownload(email, backupCodes)
	b.screenshotForPeople("2-backup-codes.png")
	b.checkPrintView(email, backupCodes)

	// 5. Done: account security says it is on. Sign out.
	b.follow("Done")
	b.expectPage("/settings/security", "Account security")
	b.see("Two-factor authentication is on.")
	b.see("Status: Enabled")
	b.see("You have 10 unused backup codes.")
	b.signOut()

	// 6. Sign in again: the Token page wants the code of the app. The step
	// used to turn 2FA on cannot be used twice, so the code is that of the
	// next step (the server accepts one step ahead).
	b.signIn(email, pw)
	b.expectPage("/login/token", "Enter your token")
	b.see("Signing in as " + email)
	code = nextCode(t, secret, confirmedAt)
	b.checkFocus("Token")
	b.keys("type the token and press Enter", code+"\r")
	b.expectPage("/dashboard", "Dashboard")
	b.see("Two-factor authentication is on.")
	b.signOut()

	// 7. Sign in with a backup code instead.
	b.signIn(email, pw)
	b.expectPage("/login/token", "Enter your token")
	b.follow("Use a backup code instead")
	b.expectPage("/login/token", "Enter a backup code")
	b.checkFocus("Backup code")
	b.keys("type a backup code and press Enter", backupCodes[3]+"\r")
	b.expectPage("/dashboard", "Dashboard")
	b.see("Signed in as " + email)

	// 8. Settings > Account security > Disable, password and confirmation.
	b.follow("Settings")
	b.expectPage("/settings/security", "Account security")
	b.see("You have 9 unused backup codes.")
	b.see("Signed in with password and a backup code")
	b.see("Signed in with password and authenticator app")
	b.follow("Disable")
	b.expectPage("/settings/2fa/disable", "Turn off two-factor authentication")
	b.typeInto("Confirm your password", pw)
	b.tick("I understand my account will be protected by my password only")
	b.submit("Disable two-factor authentication")
	b.expectPage("/settings/security", "Account security")
	b.see("Two-factor authentication is off.")
	b.see("Status: Disabled")
	b.signOut()

	// 9. The password alone signs in again.
	b.signIn(email, pw)
	b.expectPage("/dashboard", "Dashboard")
	b.see("Protect your account with two-factor authentication")

	// No page broke anything the browser could tell: no error in the
	// console (a blocked style or image, a bad input pattern...) but the
	// 404 of the spent setup link, asked for on purpose.
	b.checkConsole(setupLink)
}

// needTool returns the path of a program the test needs. Without it, the
// test (skip true) or the check (skip false, the empty path) is skipped
// with a log line on a laptop; under CI=true it fails.
func needTool(t *testing.T, name string, skip bool) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found on PATH (Debian: apt-get install %s)", name, map[string]string{
		"chromium": "chromium", "zbarimg": "zbar-tools",
	}[name])
	switch {
	case os.Getenv("CI") == "true":
		t.Fatalf("%s; it is required when CI=true", msg)
	case skip:
		t.Skip(msg)
	default:
		t.Logf("%s: skipping that check", msg)
	}
	return ""
}

// browser is one tab of a headless Chromium with a person's view of the
// twofold pages.
type browser struct {
	t      *testing.T
	ctx    context.Context // the tab; it ends with the test's deadline
	base   string
	output *lockedBuffer // what Chromium printed
	shots  int

	mu      sync.Mutex
	console []chromedp.ConsoleMessage // what the pages said in the console
}

const (
	browserDeadline = 90 * time.Second // the whole test
	stepTimeout     = 15 * time.Second // one action, such as a click and the page it loads
)

func newBrowser(t *testing.T, chromium, base string) *browser {
	t.Helper()
	output := &lockedBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // we may run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// This machine's network is closed: without these, Chromium's own
		// connections fail and slow it down.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(output),
	)
	ctx, cancel := context.WithTimeout(context.Background(), browserDeadline)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for Chromium to exit
		cancel()
	})
	b := &browser{t: t, ctx: tabCtx, base: base, output: output}
	// Start Chromium with a context that has no step timeout: the first
	// action ties the browser's life to its context.
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("starting %s: %v\n%s", chromium, err, output)
	}
	messages := chromedp.Console(tabCtx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// fatalf stops the test after saving what the page looked like.
func (b *browser) fatalf(format string, args ...any) {
	b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		msg += "\npage: " + loc
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)); err == nil {
		msg += "\npage text:\n\t" + strings.ReplaceAll(strings.TrimSpace(text), "\n", "\n\t")
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		msg += fmt.Sprintf("\nno screenshot: %v", err)
	} else {
		b.shots++
		path := filepath.Join(b.t.ArtifactDir(), fmt.Sprintf("failure-%d.png", b.shots))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			msg += fmt.Sprintf("\nno screenshot: %v", err)
		} else {
			msg += "\nscreenshot: " + path + " (kept with go test -artifacts)"
		}
	}
	if errors.Is(b.ctx.Err(), context.DeadlineExceeded) {
		msg += fmt.Sprintf("\nthe test ran out of its %v", browserDeadline)
	}
	b.t.Fatal(msg)
}

// do runs actions that return nothing, within one step's time.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("%s: %v", what, err)
	}
}

// value runs an action that reads something from the page.
func value[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fatalf("%s: %v", what, err)
	}
	return v
}

// navigate runs actions that lead to a new page, waits for that page and
// checks its HTTP status. A form that does not submit (a browser-side
// validation error) shows as a timeout, with the fields' complaints.
func (b *browser) navigate(what string, status int64, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && b.ctx.Err() == nil {
			vctx, vcancel := context.WithTimeout(b.ctx, 5*time.Second)
			defer vcancel()
			invalid, _ := chromedp.Run(vctx, chromedp.Evaluate[[]string](
				`[...document.querySelectorAll(":invalid:not(form)")].map(e => (e.labels && e.labels[0] ? e.labels[0].innerText : e.name) + ": " + e.validationMessage)`))
			if len(invalid) > 0 {
				b.fatalf("%s: no new page; the browser refused the form: %s", what, strings.Join(invalid, "; "))
			}
		}
		b.fatalf("%s: %v", what, err)
	}
	if resp.Status != status {
		b.fatalf("%s: got HTTP status %d, want %d", what, resp.Status, status)
	}
}

// open goes to a URL as if typed in the address bar.
func (b *browser) open(u string, status int64) {
	b.t.Helper()
	b.navigate("open "+u, status, chromedp.Navigate(u))
}

// xpathLiteral quotes s for an XPath expression.
func xpathLiteral(s string) string {
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return `'` + s + `'`
}

// clickable finds a link or a button by the words on it.
func clickable(text string) chromedp.Search {
	return chromedp.Search(`//*[self::a or self::button][normalize-space(.)=` + xpathLiteral(text) + `]`)
}

// field finds an input by the text of its label, as a person does: an input
// with no label, or a label tied to nothing, is not found.
func field(label string) chromedp.Search {
	return chromedp.Search(`//input[@id=//label[normalize-space(.)=` + xpathLiteral(label) + `]/@for]`)
}

// follow clicks a link or a button that leads to a new page.
func (b *browser) follow(text string) {
	b.t.Helper()
	b.navigate(fmt.Sprintf("click %q", text), 200, chromedp.Click(clickable(text)))
}

// submit clicks a form's button.
func (b *browser) submit(text string) { b.t.Helper(); b.follow(text) }

// typeInto clicks into the field labelled label and types s.
func (b *browser) typeInto(label, s string) {
	b.t.Helper()
	b.do(fmt.Sprintf("type into the field labelled %q", label), chromedp.SendKeys(field(label), s))
}

// tick clicks the label of a checkbox, and checks that it ticked it.
func (b *browser) tick(label string) {
	b.t.Helper()
	b.do(fmt.Sprintf("tick %q", label),
		chromedp.Click(chromedp.Search(`//label[normalize-space(.)=`+xpathLiteral(label)+`]`)))
	if !value(b, "read the checkbox", chromedp.JavascriptAttribute[bool](field(label), "checked")) {
		b.fatalf("clicking %q did not tick its box", label)
	}
}

// keys types on the keyboard, into whatever has the focus; a "\r" is the
// Enter key, which submits a form and so leads to a new page.
func (b *browser) keys(what, keys string) {
	b.t.Helper()
	if strings.HasSuffix(keys, "\r") {
		b.navigate(what, 200, chromedp.KeyEvent(keys))
		return
	}
	b.do(what, chromedp.KeyEvent(keys))
}

// checkFocus checks that the field labelled label has the keyboard focus.
func (b *browser) checkFocus(label string) {
	b.t.Helper()
	got := value(b, "read the focus", chromedp.Evaluate[string](
		`(e => e.labels && e.labels[0] ? e.labels[0].innerText.trim() : e.tagName + " " + (e.name || e.innerText))(document.activeElement)`))
	if got != label {
		b.fatalf("the keyboard focus: got %q, want the field labelled %q", got, label)
	}
}

// signIn signs in as a person does with a keyboard: the page opens with the
// cursor in the email field; type the email, Tab, the password, Enter.
func (b *browser) signIn(email, password string) {
	b.t.Helper()
	b.open(b.base+"/", 200)
	b.expectPage("/login", "Sign in")
	b.checkFocus("Email address")
	b.keys("type the email and Tab", email+"\t")
	b.checkFocus("Password")
	b.keys("type the password and press Enter", password+"\r")
}

// signOut clicks the Sign out button at the top of the page.
func (b *browser) signOut() {
	b.t.Helper()
	b.navigate(`click "Sign out" in the header`, 200,
		chromedp.Click(chromedp.Search(`//header//button[normalize-space(.)="Sign out"]`)))
	b.expectPage("/login", "Sign in")
	b.see("You have signed out.")
}

// expectPage checks the path of the page and its main heading.
func (b *browser) expectPage(path, heading string) {
	b.t.Helper()
	loc := value(b, "read the address", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		b.fatalf("address %q: %v", loc, err)
	}
	if u.Path != path {
		b.fatalf("page: got %s, want %s", u.Path, path)
	}
	if got := b.text(`//h1`); got != heading {
		b.fatalf("heading of %s: got %q, want %q", path, got, heading)
	}
}

// text returns the visible text of the first element that sel finds.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(value(b, "read "+sel, chromedp.Text(chromedp.Search(sel))))
}

// see checks that the page shows s. Case does not count: the page's style
// may show "Step 1 of 3" in capitals.
func (b *browser) see(s string) {
	b.t.Helper()
	text := value(b, "read the page", chromedp.Evaluate[string](`document.body.innerText`))
	norm := func(s string) string { // one space between words, lines kept
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			lines[i] = strings.Join(strings.Fields(l), " ")
		}
		return strings.Join(lines, "\n")
	}
	if !strings.Contains(strings.ToLower(norm(text)), strings.ToLower(s)) {
		b.fatalf("the page does not show %q", s)
	}
}

// checkQRCode checks that the QR code shows in the page and that a camera
// (zbarimg; no check without it) reads from it the key shown beside it.
func (b *browser) checkQRCode(zbarimg, email string, secret []byte) {
	b.t.Helper()
	img := chromedp.CSS(`.qr img`)
	if w := value(b, "read the QR code's width", chromedp.JavascriptAttribute[int](img, "naturalWidth")); w == 0 {
		b.fatalf("the QR code image did not load")
	}
	src := value(b, "read the QR code", chromedp.AttributeValue(img, "src"))
	pngData, ok := strings.CutPrefix(src.Value, "data:image/png;base64,")
	if !ok {
		b.fatalf("QR code src: got %.40q..., want a data:image/png;base64 URL", src.Value)
	}
	pngBytes, err := base64.StdEncoding.DecodeString(pngData)
	if err != nil {
		b.fatalf("QR code data: %v", err)
	}
	if zbarimg == "" {
		return
	}
	file := filepath.Join(b.t.TempDir(), "qr.png")
	if err := os.WriteFile(file, pngBytes, 0o600); err != nil {
		b.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(b.ctx, zbarimg, "--raw", "-q", file)
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		b.fatalf("zbarimg cannot read the QR code: %v %s", err, stderr.String())
	}
	uri := strings.TrimSpace(string(got))
	k, err := otp.ParseURI(uri)
	if err != nil {
		b.fatalf("the QR code holds %q: %v", uri, err)
	}
	if !bytes.Equal(k.Secret, secret) {
		b.fatalf("the QR code's secret: got %s, want the key shown, %s", otp.EncodeSecret(k.Secret), otp.EncodeSecret(secret))
	}
	if k.Type != otp.TypeTOTP || k.Account != email {
		b.fatalf("the QR code: got type %q account %q, want %q %q", k.Type, k.Account, otp.TypeTOTP, email)
	}
	b.t.Logf("zbarimg read the QR code: %s key of %s (%s), the key shown beside it", k.Type, k.Account, k.Issuer)
}

// backupCodes reads the backup codes from the page.
func (b *browser) backupCodes() []string {
	b.t.Helper()
	codes := value(b, "read the backup codes", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("main ol li")].map(e => e.innerText.trim())`))
	if len(codes) != 10 {
		b.fatalf("backup codes: got %d (%q), want 10", len(codes), codes)
	}
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}$`)
	for _, c := range codes {
		if !re.MatchString(c) || seen[c] {
			b.fatalf("backup codes: got %q, want 10 different codes like abcd-efgh-2345", codes)
		}
		seen[c] = true
	}
	return codes
}

// checkDownload checks the "Download as .txt" link: a text file with every
// code.
func (b *browser) checkDownload(email string, codes []string) {
	b.t.Helper()
	link := clickable("Download as .txt")
	attrs := value(b, "read the download link", chromedp.Attributes(link))
	if !strings.HasSuffix(attrs["download"], ".txt") {
		b.fatalf("download link: got download=%q, want a .txt file name", attrs["download"])
	}
	body, ok := strings.CutPrefix(attrs["href"], "data:text/plain;charset=utf-8,")
	if !ok {
		b.fatalf("download link: got href %.40q..., want a data:text/plain URL", attrs["href"])
	}
	text, err := url.PathUnescape(body)
	if err != nil {
		b.fatalf("download link: %v", err)
	}
	for _, want := range append([]string{email}, codes...) {
		if !strings.Contains(text, want) {
			b.fatalf("the downloaded file does not hold %q:\n%s", want, text)
		}
	}
}

// checkPrintView checks what the browser's Print command prints: the
// codes and whose they are, without the page's buttons and header.
func (b *browser) checkPrintView(email string, codes []string) {
	b.t.Helper()
	media := func(m string) {
		b.t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
		defer cancel()
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: m}); err != nil {
			b.fatalf("emulate %q media: %v", m, err)
		}
	}
	media("print")
	defer media("")
	b.see("Backup codes for " + email + ". Each code works once.")
	for _, c := range codes {
		b.see(c)
	}
	for _, hidden := range []string{"Download as .txt", "Done", "Sign out"} {
		visible := value(b, "read "+hidden, chromedp.Evaluate[bool](fmt.Sprintf(
			`[...document.querySelectorAll("a, button")].some(e => e.innerText.trim() === %q && e.checkVisibility())`, hidden)))
		if visible {
			b.fatalf("print view: %q is printed, want only the codes", hidden)
		}
	}
	b.screenshotForPeople("3-backup-codes-print.png")
}

// checkConsole fails on the errors the pages wrote to the console, but for
// the 404 answers of the URLs in expected404, and logs Chromium's other
// remarks.
func (b *browser) checkConsole(expected404 ...string) {
	b.t.Helper()
	b.mu.Lock()
	msgs := slices.Clone(b.console)
	b.mu.Unlock()
	seen := map[string]bool{}
	var errs []string
	for _, m := range msgs {
		line := fmt.Sprintf("%s: %s: %s", m.Type, m.URL, m.Text)
		if seen[line] {
			continue
		}
		seen[line] = true
		switch {
		case m.Type != chromedp.ConsoleError && !m.IsException():
			b.t.Logf("console %s", line)
		case slices.Contains(expected404, m.URL) && strings.Contains(m.Text, "404"):
		case strings.HasSuffix(m.URL, "/favicon.ico"):
			// The pages have no icon; Chromium asks for one anyway.
			b.t.Logf("console %s", line)
		default:
			errs = append(errs, line)
		}
	}
	if len(errs) > 0 {
		b.t.Errorf("the browser's console shows errors:\n\t%s", strings.Join(errs, "\n\t"))
	}
}

// screenshotForPeople saves the page into /tmp/twofold-shots/ when
// TWOFOLD_SCREENSHOTS=1, for a person to look at.
func (b *browser) screenshotForPeople(name string) {
	b.t.Helper()
	if os.Getenv("TWOFOLD_SCREENSHOTS") != "1" {
		return
	}
	const dir = "/tmp/twofold-shots"
	png := value(b, "take a screenshot", chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}
