package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// errUsage is a mistake in how twofold was called: an unknown command or
// flag, a missing argument, a value a flag does not take. main exits with
// status 2 for it, as the flag package does, and 1 for any other failure.
// Returned as it is, it means the usage was printed already and main prints
// nothing more; usageErrorf gives one a message of its own.
var errUsage = errors.New("usage")

// usageError is an errUsage with a message, which main prints.
type usageError struct{ err error }

func (e *usageError) Error() string   { return e.err.Error() }
func (e *usageError) Unwrap() []error { return []error{e.err, errUsage} }

// usageErrorf is fmt.Errorf for a mistake in how twofold was called.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// usagePrinted reports whether err is a plain errUsage, whose usage the
// command printed already: main has nothing to add to it.
func usagePrinted(err error) bool {
	return errors.Is(err, errUsage) && !errors.As(err, new(*usageError))
}

// exitCode is the exit status for the error run returned: 0 for none, 2
// for a usage error, 1 for any other.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		return 1
	}
}

// Config is everything a twofold command can be told, from flags or from
// their TWOFOLD_* environment twins; a flag wins over its variable.
type Config struct {
	Data          string
	Database      string
	Addr          string
	AllowSignup   bool
	Issuer        string
	SecureCookies bool
	TrustProxy    bool
	SessionIdle   time.Duration
	SessionMax    time.Duration
	LogLevel      string
	SMTPURL       string
	MailFrom      string

	// requireData refuses a database without data instead of creating one:
	// for commands that change an installation's keys.
	requireData bool
	// notifier, when set, emails users of changes to their accounts.
	notifier mfa.Notifier
}

// flagSet is a FlagSet whose flags each have an environment twin, named in
// the help text.
type flagSet struct {
	*flag.FlagSet
	getenv    func(string) string
	errs      []error
	args      []string                  // the arguments that are not flags
	durations map[string]*time.Duration // the flags of durationVar, by name
}

func newFlagSet(name, synopsis string, getenv func(string) string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), getenv: getenv}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: twofold %s\n\nFlags (each has an environment variable twin):\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// envName is the environment twin of a flag: --allow-signup is TWOFOLD_ALLOW_SIGNUP.
func envName(flagName string) string {
	return "TWOFOLD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (fs *flagSet) describe(name, help string) string {
	return fmt.Sprintf("%s (%s)", help, envName(name))
}

func (fs *flagSet) stringVar(p *string, name, def, help string) {
	if v := fs.getenv(envName(name)); v != "" {
		def = v
	}
	fs.StringVar(p, name, def, fs.describe(name, help))
	// --help shows the default, which may come from the environment.
	fs.Lookup(name).DefValue = hidePassword(def)
}

func (fs *flagSet) boolVar(p *bool, name string, def bool, help string) {
	if v := fs.getenv(envName(name)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want true or false", envName(name), v))
		}
		def = b
	}
	fs.BoolVar(p, name, def, fs.describe(name, help))
}

func (fs *flagSet) durationVar(p *time.Duration, name string, def time.Duration, help string) {
	if v := fs.getenv(envName(name)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want a positive duration such as 30m", envName(name), v))
		}
		def = d
	}
	fs.DurationVar(p, name, def, fs.describe(name, help))
	if fs.durations == nil {
		fs.durations = make(map[string]*time.Duration)
	}
	fs.durations[name] = p
}

// checkDurations refuses a duration flag given as zero or less, as its
// environment twin is: the code behind it would take such a value for
// "the default" or for nothing at all. It reports like the flag package does
// a value it cannot parse.
func (fs *flagSet) checkDurations() error {
	var bad *flag.Flag
	fs.Visit(func(f *flag.Flag) {
		if p, ok := fs.durations[f.Name]; ok && *p <= 0 && bad == nil {
			bad = f
		}
	})
	if bad == nil {
		return nil
	}
	fmt.Fprintf(fs.Output(), "invalid value %q for flag -%s: want a positive duration such as 30m\n", bad.Value, bad.Name)
	fs.Usage()
	return errUsage
}

// dataFlag adds --data and --database, which every command takes.
func (fs *flagSet) dataFlag(cfg *Config) {
	fs.stringVar(&cfg.Data, "data", "twofold-data", "directory of the secret key files and of the SQLite database")
	fs.stringVar(&cfg.Database, "database", "", "postgres://USER:PASSWORD@HOST/DB to keep the data in PostgreSQL, shared by any number of instances, or sqlite:PATH (default: twofold.db in --data)")
}

// parse parses args and reports bad environment values; -h prints the help.
// Flags may come after the other arguments too (user add EMAIL --data DIR);
// everything after "--" is an argument. The command takes exactly nargs
// arguments that are not flags: any other number is a usage error, so that
// a stray word (key rotate 3fc4a205, for --primary 3fc4a205) never runs a
// command that was not asked for.
func (fs *flagSet) parse(args []string, nargs int) error {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			return errUsage
		}
		rest := fs.FlagSet.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			fs.args = append(fs.args, rest...)
			break
		}
		fs.args = append(fs.args, rest[0])
		args = rest[1:]
	}
	if err := fs.checkDurations(); err != nil {
		return err
	}
	if len(fs.args) != nargs {
		if len(fs.args) > nargs {
			fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.args[nargs])
		}
		fs.Usage()
		return errUsage
	}
	// A bad environment twin is a bad flag value too.
	if err := errors.Join(fs.errs...); err != nil {
		return &usageError{err}
	}
	return nil
}

// Arg is the i-th argument that is not a flag, or "".
func (fs *flagSet) Arg(i int) string {
	if i < 0 || i >= len(fs.args) {
		return ""
	}
	return fs.args[i]
}

// errHelp means --help was asked for and printed: not a failure.
var errHelp = errors.New("help")
