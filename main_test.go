package main

import (
	"bufio"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

func TestHelp_MentionsEveryFlag(t *testing.T) {
	fs, _, _ := newFlagSet()
	var out strings.Builder
	fs.SetOutput(&out)
	if err := fs.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(help, "  -"+f.Name+" ") && !strings.Contains(help, "  -"+f.Name+"\n") {
			t.Errorf("--help does not mention -%s:\n%s", f.Name, help)
		}
		env := proxy.EnvName(strings.ReplaceAll(f.Name, "-", "_"))
		if !strings.Contains(f.Usage, "[env "+env+"]") {
			t.Errorf("-%s usage %q does not name %s", f.Name, f.Usage, env)
		}
	})
	if got, want := n, len(configFlags)+1; got != want {
		t.Fatalf("flag count = %d, want %d (config flags + --config)", got, want)
	}
	for _, want := range []string{`(default "127.0.0.1:6380")`, "(default 10000)", "(default 10s)", `(default "info")`, "embedded"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
}

func TestLoadSettings_HelpIsErrHelp(t *testing.T) {
	_, err := loadSettings([]string{"-h"}, func(string) string { return "" })
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("loadSettings(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestLoadSettings_Precedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qgate.yml")
	body := "listen: file:1\nlog_level: warn\nmax_clients: 100\nshutdown_timeout: 20s\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"QGATE_LOG_LEVEL":   "error",
		"QGATE_MAX_CLIENTS": "200",
	}
	getenv := func(k string) string { return env[k] }
	args := []string{"--config", path, "--max-clients", "300"}

	cfg, err := loadSettings(args, getenv)
	if err != nil {
		t.Fatalf("loadSettings() = %v", err)
	}
	want := proxy.DefaultConfig() // log_format, backend, …: defaults
	want.Listen = "file:1"        // file only
	want.ShutdownTimeout = 20 * time.Second
	want.LogLevel = "error" // env beats file
	want.MaxClients = 300   // flag beats env and file
	want.Dir = cfg.Dir
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("loadSettings() = %+v, want %+v", cfg, want)
	}
}

func TestLoadSettings_FlagEqualToDefaultStillOverrides(t *testing.T) {
	env := map[string]string{"QGATE_LISTEN": "env:1"}
	cfg, err := loadSettings([]string{"--listen", proxy.DefaultListen}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("loadSettings() = %v", err)
	}
	if got, want := cfg.Listen, proxy.DefaultListen; got != want {
		t.Fatalf("Listen = %q, want %q (an explicit flag wins even when it equals the default)", got, want)
	}
}

func TestLoadSettings_ConfigFromEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qgate.yml")
	if err := os.WriteFile(path, []byte("log_format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"QGATE_CONFIG": path}
	cfg, err := loadSettings(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("loadSettings() = %v", err)
	}
	if got, want := cfg.LogFormat, "json"; got != want {
		t.Fatalf("LogFormat = %q, want %q", got, want)
	}
}

func TestLoadSettings_Errors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"unknown flag", []string{"--nope"}, nil, []string{"flag provided but not defined: -nope"}},
		{"bad flag value", []string{"--max-clients", "x"}, nil, []string{"invalid value"}},
		{"extra argument", []string{"serve"}, nil, []string{`unexpected argument "serve"`}},
		{"missing file", []string{"--config", "/nonexistent/qgate.yml"}, nil, []string{"load config /nonexistent/qgate.yml"}},
		{"bad env", nil, map[string]string{"QGATE_MAX_CLIENTS": "x"}, []string{"QGATE_MAX_CLIENTS"}},
		{
			"every invalid field",
			[]string{"--max-clients", "0", "--log-format", "xml", "--backend", "ftp://x"},
			nil,
			[]string{"invalid configuration", "max_clients: must be > 0, got 0", "log_format: ", "backend: "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadSettings(tt.args, func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatal("loadSettings() = nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("loadSettings() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckConfig_ReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "email.json"), []byte(`{"type":"object","required":["receiver"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("queues:\n  - match: \"email_*\"\n    schema: email.json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("max_clients: -1\nqueues:\n  - match: \"a\"\n    schema: nope.json\n    deliver: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if got, want := checkConfig([]string{good}, &out), 0; got != want {
		t.Fatalf("check-config good = %d, want %d: %s", got, want, out.String())
	}
	out.Reset()
	if got, want := checkConfig([]string{bad}, &out), 1; got != want {
		t.Fatalf("check-config bad = %d, want %d", got, want)
	}
	for _, want := range []string{"max_clients: must be > 0", "queues[0].schema: read schema", `queues[0].deliver: must be payload or envelope, got "sometimes"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCheckConfig_EachBadFieldExactMessage: one bad field per file, its exact line of output.
func TestCheckConfig_EachBadFieldExactMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"misspelt rule field", "queues:\n  - match: a\n    visiblity_timeout: 30s\n",
			`line 3: queues[0]: unknown field "visiblity_timeout" (did you mean visibility_timeout?)`},
		{"wrong type in a rule", "queues:\n  - {match: a}\n  - {match: b}\n  - {match: c, max_attempts: three}\n",
			`line 4: queues[2].max_attempts: must be an integer, got "three"`},
		{"misspelt top-level field", "max_client: 5\n", `line 1: unknown field "max_client" (did you mean max_clients?)`},
		{"duration without unit", "shutdown_timeout: 10\n", `line 1: shutdown_timeout: must be a duration such as 30s or 1m30s, got "10"`},
		{"bad value", "log_format: xml\n", `log_format: must be text or json, got "xml"`},
		{"bad rule value", "queues:\n  - {match: a, deliver: sometimes}\n", `queues[0].deliver: must be payload or envelope, got "sometimes"`},
		{"rule without match", "queues:\n  - {format: json}\n", `queues[0].match: required (a glob such as "email_*")`},
		{"rule that is not a mapping", "queues:\n  - email_*\n", `line 2: queues[0]: must be a mapping (name: value), got "email_*"`},
		{"negative max_length", "queues:\n  - {match: a, max_length: -1}\n", `queues[0].max_length: must be >= 0, got -1`},
		{"bad overflow", "queues:\n  - {match: a, max_length: 5, overflow: block}\n", `queues[0].overflow: must be reject or drop-oldest, got "block"`},
		{"overflow without max_length", "queues:\n  - {match: a, overflow: drop-oldest}\n", `queues[0].overflow: needs max_length`},
		{"negative delay", "queues:\n  - {match: a, delay: -5s}\n", `queues[0].delay: must be >= 0, got -5s`},
		{"controls on a channel", "channels:\n  - {match: a, max_length: 5}\n", `channels[0].max_length: max_length, overflow and delay apply to queues only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "qgate.yaml")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if got, want := checkConfig([]string{path}, &out), 1; got != want {
				t.Fatalf("check-config = %d, want %d:\n%s", got, want, out.String())
			}
			if got, want := out.String(), path+": invalid (1 error, 0 warnings)\n  "+tt.want+"\n"; got != want {
				t.Fatalf("check-config printed\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestCheckConfig_WrongTypesDoNotHideOtherProblems: type errors, unknown fields and Validate's
// problems come out together, and a value that could not be read is not reported twice.
func TestCheckConfig_WrongTypesDoNotHideOtherProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qgate.yaml")
	body := "max_clients: many\nlog_format: xml\nqueues:\n  - match: a\n    visiblity_timeout: 1s\n    max_attempts: three\n  - match: b\n    format: xml\nusers:\n  - name: u\n    password_hash: [x]\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if got, want := checkConfig([]string{path}, &out), 1; got != want {
		t.Fatalf("check-config = %d, want %d", got, want)
	}
	want := path + `: invalid (6 errors, 0 warnings)
  line 1: max_clients: must be an integer, got "many"
  line 5: queues[0]: unknown field "visiblity_timeout" (did you mean visibility_timeout?)
  line 6: queues[0].max_attempts: must be an integer, got "three"
  line 11: users[0].password_hash: must be a string, got a list
  log_format: must be text or json, got "xml"
  queues[1].format: must be any or json, got "xml"
`
	if got := out.String(); got != want {
		t.Fatalf("check-config printed\n%s\nwant\n%s", got, want)
	}

	// Starting qgate with the same file prints the same list and exits 2.
	var stdout, stderr strings.Builder
	if got, want := run([]string{"--config", path}, func(string) string { return "" }, &stdout, &stderr), 2; got != want {
		t.Fatalf("run = %d, want %d", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(want, "\n"), "\n")[1:]
	if got, want := stderr.String(), "qgate: invalid configuration:\n"+strings.Join(lines, "\n")+"\n"; got != want {
		t.Fatalf("start printed\n%s\nwant\n%s", got, want)
	}
}

func TestCheckConfig_WarningsDoNotFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qgate.yaml")
	body := "queues:\n  - {match: \"email_*\", max_attempts: 3}\n  - {match: email_urgent, format: json}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if got, want := checkConfig([]string{path}, &out), 0; got != want {
		t.Fatalf("check-config = %d, want %d:\n%s", got, want, out.String())
	}
	want := path + `: ok (2 queue rules, 0 channel rules, 0 users; 2 warnings)
  warning: queues[0] "email_*": max_attempts does nothing without delivery: at-least-once
  warning: queues[1] "email_urgent": never applies: queues[0] "email_*" comes first and matches every name it matches
`
	if got := out.String(); got != want {
		t.Fatalf("check-config printed\n%s\nwant\n%s", got, want)
	}
}

func TestVersion_BuildInfo(t *testing.T) {
	info := func(version string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/qgate/qgate", Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	rev := "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		want          string
	}{
		{"ldflags win", "v9.9.9", info("v1.2.3"), "v9.9.9"},
		{"module version", "", info("v1.2.3"), "v1.2.3"},
		{"devel with commit", "", info("(devel)", "vcs.revision", rev, "vcs.modified", "false"), "0.1.0-dev+0123456789ab"},
		{"devel with changes", "", info("(devel)", "vcs.revision", rev, "vcs.modified", "true"), "0.1.0-dev+0123456789ab.dirty"},
		{"devel without vcs", "", info("(devel)"), "0.1.0-dev"},
		{"no build info", "", nil, "0.1.0-dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildVersion(tt.ldflags, "0.1.0-dev", tt.bi); got != tt.want {
				t.Fatalf("buildVersion() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestVersion_FlagAndINFOAgree: `qgate --version` prints the version INFO reports as qgate_version.
func TestVersion_FlagAndINFOAgree(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"--version"}, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("--version exit %d: %s", code, errOut.String())
	}
	fields := strings.Fields(out.String())
	if len(fields) != 3 || fields[0] != "qgate" {
		t.Fatalf("--version printed %q, want \"qgate VERSION GOVERSION\"", out.String())
	}
	if got, want := fields[1], versionString(); got != want {
		t.Fatalf("--version = %q, want %q", got, want)
	}
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Listen, cfg.Backend = "127.0.0.1:0", r.URL()
	q := proxytest.StartQgate(t, cfg)
	info, err := q.Client(t).Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info, "qgate_version:"+fields[1]+"\r\n"; !strings.Contains(got, want) {
		t.Fatalf("INFO server lacks %q:\n%s", want, got)
	}
}

func TestHashPassword(t *testing.T) {
	in, err := os.CreateTemp(t.TempDir(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.WriteString("correct horse\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := hashPassword([]string{"--cost", "4"}, in, &out, &errOut); code != 0 {
		t.Fatalf("hash-password = %d: %s", code, errOut.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")); err != nil {
		t.Fatalf("printed hash %q does not verify: %v", hash, err)
	}
	if strings.Contains(out.String()+errOut.String(), "correct horse") {
		t.Fatal("the password was printed")
	}
	if code := hashPassword([]string{"secret-on-the-command-line"}, in, &out, &errOut); code != 2 {
		t.Fatalf("password argument: exit %d, want 2", code)
	}
	empty, _ := os.Open(os.DevNull)
	defer empty.Close()
	if code := hashPassword(nil, empty, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "empty password") {
		t.Fatalf("empty password: exit %d, %q", code, errOut.String())
	}
}

// TestServe_SIGHUPReloadsUsers runs qgate as main does, changes the config file, sends SIGHUP and sees
// the new user accepted and the removed one's connection closed, then stops it with SIGTERM.
func TestServe_SIGHUPReloadsUsers(t *testing.T) {
	r := proxytest.StartRedis(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h1, _ := bcrypt.GenerateFromPassword([]byte("pw-one"), bcrypt.MinCost)
	h2, _ := bcrypt.GenerateFromPassword([]byte("pw-two"), bcrypt.MinCost)
	path := filepath.Join(t.TempDir(), "qgate.yaml")
	write := func(users string) {
		body := "listen: " + addr + "\nbackend: " + r.URL() + "\nqueues:\n  - {match: jobs, max_attempts: 3}\nusers:\n" + users
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("  - {name: one, password_hash: \"" + string(h1) + "\", push: [\"*\"]}\n")
	cfg, err := loadSettings([]string{"--config", path}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs := &proxytest.SafeBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- serve(cfg, slog.New(slog.NewTextHandler(logs, nil)), func() (proxy.Config, error) {
			return loadSettings([]string{"--config", path}, func(string) string { return "" })
		})
	}()
	var one net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		if one, err = net.Dial("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("qgate did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer one.Close()
	rd := bufio.NewReader(one)
	roundTrip := func(c net.Conn, rd *bufio.Reader, cmd string) string {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			return "write: " + err.Error()
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			return "read: " + err.Error()
		}
		return strings.TrimSpace(line)
	}
	if got := roundTrip(one, rd, "AUTH one pw-one"); got != "+OK" {
		t.Fatalf("AUTH one = %q", got)
	}
	if want := `msg="config: queues[0] \"jobs\": max_attempts does nothing without delivery: at-least-once"`; !strings.Contains(logs.String(), want) {
		t.Fatalf("start-up log lacks the rule warning %s:\n%s", want, logs.String())
	}
	write("  - {name: two, password_hash: \"" + string(h2) + "\", push: [\"*\"]}\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := roundTrip(one, rd, "PING"); !strings.HasPrefix(got, "read: ") {
		t.Fatalf("removed user's connection still served: %q", got)
	}
	two, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	rd2 := bufio.NewReader(two)
	if got := roundTrip(two, rd2, "AUTH two pw-two"); got != "+OK" {
		t.Fatalf("AUTH two after reload = %q", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d\n%s", code, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if strings.Contains(logs.String(), "pw-one") || strings.Contains(logs.String(), "pw-two") {
		t.Fatal("a password reached the log")
	}
}

// go-redis's own lines go through the server's slog handler (JSON here), not plain stderr text.
func TestLog_GoRedisLinesThroughSlog(t *testing.T) {
	var buf proxytest.SafeBuffer
	l := redisLogger{slog.New(slog.NewJSONHandler(&buf, nil)).With("component", "go-redis")}
	l.Printf(t.Context(), "redis: connection pool: failed to dial after %d attempts: %s\n", 5, "refused")
	got := strings.TrimSpace(buf.String())
	for _, want := range []string{`"level":"WARN"`, `"component":"go-redis"`, `"msg":"redis: connection pool: failed to dial after 5 attempts: refused"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %s lacks %s", got, want)
		}
	}
}
