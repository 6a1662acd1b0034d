// Command qgate is a Redis-protocol queue proxy: point Redis clients at it and they get
// validation, authentication and retry semantics on plain list and pub/sub commands.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/qgate/qgate/proxy"
)

// version, when set at build time (go build -ldflags "-X main.version=v1.2.3"), is qgate's version
// as is; otherwise it comes from the build information (README "Configuration", Version).
var version = ""

// INFO's qgate_version and `qgate --version` print the same string.
func init() { proxy.Version = versionString() }

// configEnv names the config file when --config is not given.
const configEnv = "QGATE_CONFIG"

// configFlag is a command-line flag that sets one Config field.
type configFlag struct {
	name  string                  // flag name; the YAML name with '-' for '_'
	usage string                  // help text, without default and env var
	field func(*proxy.Config) any // pointer to the field: *string, *int, *int64 or *time.Duration
}

var configFlags = []configFlag{
	{"listen", "address to accept Redis clients on (host:port)", func(c *proxy.Config) any { return &c.Listen }},
	{"backend", "backend Redis URL: redis://, rediss://, unix://, redis+sentinel://, redis+cluster:// (default: embedded in-memory Redis, nothing persisted)", func(c *proxy.Config) any { return &c.Backend }},
	{"log-format", "log format: text or json", func(c *proxy.Config) any { return &c.LogFormat }},
	{"log-level", "log level: debug, info, warn or error", func(c *proxy.Config) any { return &c.LogLevel }},
	{"max-clients", "maximum connected clients", func(c *proxy.Config) any { return &c.MaxClients }},
	{"max-bulk-bytes", "largest value a client may send, in bytes", func(c *proxy.Config) any { return &c.MaxBulkBytes }},
	{"shutdown-timeout", "how long SIGTERM waits for clients to drain", func(c *proxy.Config) any { return &c.ShutdownTimeout }},
	{"pubsub-output-limit", "bytes queued for a slow subscriber before it is disconnected", func(c *proxy.Config) any { return &c.PubSubOutputLimit }},
	{"client-output-limit", "bytes of unwritten replies before a client (not subscribed) is disconnected; 0 = no limit", func(c *proxy.Config) any { return &c.ClientOutputLimit }},
	{"blocking-conns", "ignored (blocked pops no longer use connections of their own; kept so old settings still load)", func(c *proxy.Config) any { return &c.BlockingConns }},
	{"keyspace-events", "how blocked pops learn of new items: auto (enable notify-keyspace-events Kgl on the backend; poll where CONFIG is refused), assume (the flags are pre-set, CONFIG disabled) or off (poll)", func(c *proxy.Config) any { return &c.KeyspaceEvents }},
	{"blocking-poll-interval", "poll of waited keys when keyspace notifications are off or cannot be enabled", func(c *proxy.Config) any { return &c.BlockingPollInterval }},
	{"blocking-safety-interval", "re-check of every waited key with keyspace notifications on (for missed notifications)", func(c *proxy.Config) any { return &c.BlockingSafetyInterval }},
	{"pool-size", "backend connection pool size (0 = go-redis default)", func(c *proxy.Config) any { return &c.PoolSize }},
	{"backend-read-timeout", "how long a backend reply may take before the command fails as of unknown outcome (0 = wait as long as Redis takes)", func(c *proxy.Config) any { return &c.BackendReadTimeout }},
	{"backend-write-timeout", "how long writing a command to the backend may take (0 = none)", func(c *proxy.Config) any { return &c.BackendWriteTimeout }},
	{"backend-dial-timeout", "how long connecting to the backend may take (0 = none)", func(c *proxy.Config) any { return &c.BackendDialTimeout }},
	{"http", "address of the HTTP listener for /metrics, /healthz, /readyz and /api (host:port; default off)", func(c *proxy.Config) any { return &c.HTTP }},
	{"instance-ttl", "how long an instance may miss heartbeats before others give back its undelivered items", func(c *proxy.Config) any { return &c.InstanceTTL }},
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main with an exit code: 0 ok, 1 runtime failure, 2 bad usage or configuration.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version", "--version", "-version":
			fmt.Fprintln(stdout, "qgate", proxy.Version, runtime.Version())
			return 0
		case "check-config":
			return checkConfig(args[1:], stdout)
		case "hash-password":
			return hashPassword(args[1:], os.Stdin, stdout, stderr)
		}
	}
	cfg, err := loadSettings(args, getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs, _, _ := newFlagSet()
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "qgate: %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	level, _ := cfg.SlogLevel() // validated
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(stderr, opts)
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(stderr, opts)
	}
	reload := func() (proxy.Config, error) { return loadSettings(args, getenv) }
	log := slog.New(handler)
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})
	return serve(cfg, log, reload)
}

// redisLogger passes go-redis's own log lines (dial failures, pool and pub/sub reconnects) to the
// server's logger, in its format (README "Operations", "Logs"), at warn level: go-redis logs only
// trouble.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// checkConfig validates a config file (rules and JSON Schemas included) and prints every problem
// with its line or path, then the warnings (settings that do nothing): exit status 0 when it is
// valid (warnings or not), 1 when it is not, 2 for bad usage. Starting qgate with the file prints
// the same problems (loadSettings).
func checkConfig(args []string, out io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(out, "usage: qgate check-config FILE")
		return 2
	}
	cfg, err := proxy.LoadConfig(args[0])
	var fileErr *proxy.FileError
	if err != nil && !errors.As(err, &fileErr) {
		fmt.Fprintf(out, "%s: invalid\n  %s\n", args[0], err)
		return 1
	}
	problems := configProblems(err, cfg)
	warnings := cfg.Warnings()
	if len(problems) > 0 {
		fmt.Fprintf(out, "%s: invalid (%s, %s)\n", args[0], plural(len(problems), "error"), plural(len(warnings), "warning"))
	} else {
		fmt.Fprintf(out, "%s: ok (%s, %s, %s; %s)\n", args[0], plural(len(cfg.Queues), "queue rule"),
			plural(len(cfg.Channels), "channel rule"), plural(len(cfg.Users), "user"), plural(len(warnings), "warning"))
	}
	for _, p := range problems {
		fmt.Fprintf(out, "  %s\n", p)
	}
	for _, w := range warnings {
		fmt.Fprintf(out, "  warning: %s\n", w)
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

// configProblems is every problem of a configuration, one a line: the config file's structural
// problems (loadErr, a *proxy.FileError or nil), then what Validate finds in the rest.
func configProblems(loadErr error, cfg proxy.Config) []string {
	var problems []string
	var fe *proxy.FileError
	if errors.As(loadErr, &fe) {
		problems = append(problems, fe.Problems...)
	}
	if err := cfg.Validate(); err != nil {
		for _, p := range strings.Split(err.Error(), "\n") {
			if path, _, ok := strings.Cut(p, ": "); ok && fe != nil && fe.Covers(path) {
				continue // the same value, already reported as unreadable (it has its default now)
			}
			problems = append(problems, p)
		}
	}
	return problems
}

// plural is "1 error", "2 errors".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// serve runs the proxy until SIGTERM or SIGINT, then shuts it down within cfg.ShutdownTimeout. On
// SIGHUP it re-reads the settings with reload and applies users, rights and rules (Server.Reload).
func serve(cfg proxy.Config, log *slog.Logger, reload func() (proxy.Config, error)) int {
	backend := "embedded in-memory Redis (data is not persisted)"
	if cfg.Backend != "" {
		backend = proxy.RedactBackendURL(cfg.Backend)
	}
	log.Info("starting qgate", "version", proxy.Version, "listen", cfg.Listen, "backend", backend)
	for _, w := range cfg.Warnings() {
		log.Warn("config: " + w) // settings that do nothing; check-config prints the same
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := proxy.New(cfg, log)
	if err != nil {
		log.Error("start qgate", "err", err)
		return 1
	}
	if err := srv.Listen(); err != nil {
		log.Error("start qgate", "err", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

wait:
	for {
		select {
		case err := <-served:
			if err != nil {
				log.Error("serve", "err", err)
				return 1
			}
			return 0
		case <-hup:
			log.Info("SIGHUP received: reloading users, rights and rules")
			next, err := reload()
			if err == nil {
				err = srv.Reload(next)
			}
			if err != nil {
				log.Error("reload failed; keeping the previous configuration", "err", err)
			}
		case <-ctx.Done():
			break wait
		}
	}
	stop() // a second signal kills the process the default way
	log.Info("signal received, shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	code := 0
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	if err := <-served; err != nil {
		log.Error("serve", "err", err)
		code = 1
	}
	return code
}

// loadSettings assembles the configuration: defaults < config file (--config or QGATE_CONFIG)
// < QGATE_* environment < flags given on the command line; then validates it.
func loadSettings(args []string, getenv func(string) string) (proxy.Config, error) {
	fs, configPath, fromFlags := newFlagSet()
	fs.SetOutput(io.Discard) // run prints usage and errors itself
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return proxy.Config{}, err
		}
		return proxy.Config{}, fmt.Errorf("%w (run qgate --help for usage)", err)
	}
	if fs.NArg() > 0 {
		return proxy.Config{}, fmt.Errorf("unexpected argument %q (run qgate --help)", fs.Arg(0))
	}

	cfg := proxy.DefaultConfig()
	path := *configPath
	if path == "" {
		path = getenv(configEnv)
	}
	var fileErr error // the file's structural problems, reported with Validate's below
	if path != "" {
		var err error
		var fe *proxy.FileError
		if cfg, err = proxy.LoadConfig(path); errors.As(err, &fe) {
			fileErr = fe
		} else if err != nil {
			return proxy.Config{}, err
		}
	}
	if err := cfg.ApplyEnv(getenv); err != nil {
		return proxy.Config{}, fmt.Errorf("read environment: %w", err)
	}
	fs.Visit(func(f *flag.Flag) {
		for _, cf := range configFlags {
			if cf.name == f.Name {
				copyField(cf.field(&cfg), cf.field(fromFlags))
			}
		}
	})
	if problems := configProblems(fileErr, cfg); len(problems) > 0 {
		return proxy.Config{}, fmt.Errorf("invalid configuration:\n%s", strings.Join(problems, "\n"))
	}
	return cfg, nil
}

// newFlagSet defines qgate's flags. Config flags write into the returned Config (which starts
// at the defaults, so --help shows them); loadSettings copies only the flags that were set.
func newFlagSet() (fs *flag.FlagSet, configPath *string, fromFlags *proxy.Config) {
	fs = flag.NewFlagSet("qgate", flag.ContinueOnError)
	fromFlags = new(proxy.Config)
	*fromFlags = proxy.DefaultConfig()
	configPath = fs.String("config", "", "YAML config file [env "+configEnv+"]")
	for _, cf := range configFlags {
		usage := fmt.Sprintf("%s [env %s]", cf.usage, proxy.EnvName(strings.ReplaceAll(cf.name, "-", "_")))
		switch p := cf.field(fromFlags).(type) {
		case *string:
			fs.StringVar(p, cf.name, *p, usage)
		case *int:
			fs.IntVar(p, cf.name, *p, usage)
		case *int64:
			fs.Int64Var(p, cf.name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, cf.name, *p, usage)
		default:
			panic(fmt.Sprintf("flag %s: unsupported field type %T", cf.name, p))
		}
	}
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "Usage: qgate [flags]    run the proxy")
		fmt.Fprintln(out, "       qgate check-config FILE    validate a config file, schemas included")
		fmt.Fprintln(out, "       qgate hash-password [--cost N]    read a password (stdin or prompt), print its bcrypt hash")
		fmt.Fprintln(out, "       qgate --version    print the version (also: qgate version)")
		fmt.Fprintln(out, "\nSettings come from the defaults, then the --config file, then QGATE_* environment")
		fmt.Fprintln(out, "variables, then flags; each later source overrides the earlier ones.")
		fmt.Fprintln(out, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs, configPath, fromFlags
}

// copyField sets *dst = *src for two pointers of the same field type.
func copyField(dst, src any) {
	switch d := dst.(type) {
	case *string:
		*d = *src.(*string)
	case *int:
		*d = *src.(*int)
	case *int64:
		*d = *src.(*int64)
	case *time.Duration:
		*d = *src.(*time.Duration)
	}
}

// versionString is qgate's version: the -ldflags value when set, else the module version when the
// binary was built from a module version (go install …@v1.2.3; with VCS stamping Go also derives one
// from the commit), else proxy.Version's default with the commit when the build recorded it
// ("0.1.0-dev+0123456789ab", ".dirty" with uncommitted changes).
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return buildVersion(version, proxy.Version, bi)
}

// buildVersion is versionString's rule, for any build information (nil: none).
func buildVersion(ldflags, base string, bi *debug.BuildInfo) string {
	if ldflags != "" {
		return ldflags
	}
	if bi == nil {
		return base
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = ".dirty"
		}
	}
	if rev == "" {
		return base
	}
	return base + "+" + rev[:min(len(rev), 12)] + dirty
}

// hashPassword implements `qgate hash-password`: it reads a password from stdin (the first line) or,
// on a terminal, prompts twice without echo, and prints its bcrypt hash for a users: entry.
func hashPassword(args []string, in *os.File, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(errOut)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost (%d-%d)", bcrypt.MinCost, bcrypt.MaxCost))
	fs.Usage = func() {
		fmt.Fprintln(errOut, "usage: qgate hash-password [--cost N] < password-file")
		fmt.Fprintln(errOut, "Reads a password from stdin (or prompts on a terminal) and prints its bcrypt hash.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(errOut, "qgate hash-password: the password is read from stdin, not from the command line (it would stay in shell history)")
		return 2
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(errOut, "qgate hash-password: --cost must be %d-%d\n", bcrypt.MinCost, bcrypt.MaxCost)
		return 2
	}
	var pw []byte
	var err error
	if fd := int(in.Fd()); term.IsTerminal(fd) {
		pw, err = prompt(fd, errOut)
	} else {
		pw, err = readLine(in)
	}
	if err != nil {
		fmt.Fprintf(errOut, "qgate hash-password: %v\n", err)
		return 1
	}
	hash, err := hashOf(pw, *cost)
	if err != nil {
		fmt.Fprintf(errOut, "qgate hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(out, hash)
	return 0
}

// hashOf returns the bcrypt hash of a password.
func hashOf(pw []byte, cost int) (string, error) {
	if len(pw) == 0 {
		return "", errors.New("empty password")
	}
	if len(pw) > 72 {
		return "", errors.New("password longer than 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// readLine reads the first line of r without its line ending.
func readLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

// prompt asks for the password twice on the terminal, without echo.
func prompt(fd int, errOut io.Writer) ([]byte, error) {
	fmt.Fprint(errOut, "Password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(errOut)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(errOut, "Again: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(errOut)
	if err != nil {
		return nil, err
	}
	if string(a) != string(b) {
		return nil, errors.New("the passwords differ")
	}
	return a, nil
}
