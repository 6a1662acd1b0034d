package proxy_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
)

func TestConfig_DefaultIsValid(t *testing.T) {
	cfg := proxy.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if got, want := cfg.Listen, "127.0.0.1:6380"; got != want {
		t.Fatalf("Listen = %q, want %q", got, want)
	}
	if got, want := cfg.MaxBulkBytes, int64(512*1024*1024); got != want {
		t.Fatalf("MaxBulkBytes = %d, want %d", got, want)
	}
	if got, want := cfg.ShutdownTimeout, 10*time.Second; got != want {
		t.Fatalf("ShutdownTimeout = %s, want %s", got, want)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*proxy.Config)
		want   string // "" = valid
	}{
		{"listen ok any host", func(c *proxy.Config) { c.Listen = ":6380" }, ""},
		{"listen ok port 0", func(c *proxy.Config) { c.Listen = "127.0.0.1:0" }, ""},
		{"listen ok ipv6", func(c *proxy.Config) { c.Listen = "[::1]:6380" }, ""},
		{"listen no port", func(c *proxy.Config) { c.Listen = "localhost" }, `listen: must be host:port, got "localhost"`},
		{"listen bad port", func(c *proxy.Config) { c.Listen = "localhost:http" }, `listen: port must be a number 0-65535, got "http"`},
		{"listen port too big", func(c *proxy.Config) { c.Listen = "localhost:70000" }, `listen: port must be`},
		{"backend embedded", func(c *proxy.Config) { c.Backend = "" }, ""},
		{"backend redis", func(c *proxy.Config) { c.Backend = "redis://u:p@localhost:6379/2" }, ""},
		{"backend sentinel", func(c *proxy.Config) { c.Backend = "redis+sentinel://a:26379,b:26379/mymaster" }, ""},
		{"backend cluster", func(c *proxy.Config) { c.Backend = "redis+cluster://a:7000,b:7001" }, ""},
		{"backend scheme", func(c *proxy.Config) { c.Backend = "http://localhost" }, `backend: unsupported scheme "http"`},
		{"backend no scheme", func(c *proxy.Config) { c.Backend = "localhost:6379" }, `backend: missing scheme`},
		{"backend bad db", func(c *proxy.Config) { c.Backend = "redis://localhost/abc" }, `backend: redis: invalid database number`},
		{"backend unknown option", func(c *proxy.Config) { c.Backend = "redis://localhost?bogus=1" }, `backend: redis: unexpected option: bogus`},
		{"log format", func(c *proxy.Config) { c.LogFormat = "xml" }, `log_format: must be text or json, got "xml"`},
		{"log level", func(c *proxy.Config) { c.LogLevel = "verbose" }, `log_level: must be debug, info, warn or error, got "verbose"`},
		{"log level debug", func(c *proxy.Config) { c.LogLevel = "debug" }, ""},
		{"max clients", func(c *proxy.Config) { c.MaxClients = -1 }, "max_clients: must be > 0, got -1"},
		{"max bulk bytes", func(c *proxy.Config) { c.MaxBulkBytes = 0 }, "max_bulk_bytes: must be > 0, got 0"},
		{"shutdown timeout", func(c *proxy.Config) { c.ShutdownTimeout = -time.Second }, "shutdown_timeout: must be > 0, got -1s"},
		{"pubsub output limit", func(c *proxy.Config) { c.PubSubOutputLimit = 0 }, "pubsub_output_limit: must be > 0, got 0"},
		{"client output limit", func(c *proxy.Config) { c.ClientOutputLimit = -1 }, "client_output_limit: must be >= 0 (0 = no limit), got -1"},
		{"client output limit none", func(c *proxy.Config) { c.ClientOutputLimit = 0 }, ""},
		{"blocking conns ignored", func(c *proxy.Config) { c.BlockingConns = 0 }, ""},
		{"keyspace events", func(c *proxy.Config) { c.KeyspaceEvents = "on" }, `keyspace_events: must be auto, assume or off, got "on"`},
		{"keyspace events off", func(c *proxy.Config) { c.KeyspaceEvents = "off" }, ""},
		{"blocking poll interval", func(c *proxy.Config) { c.BlockingPollInterval = -time.Second }, "blocking_poll_interval: must be >= 1ms (0 = default), got -1s"},
		{"blocking safety interval", func(c *proxy.Config) { c.BlockingSafetyInterval = time.Microsecond }, "blocking_safety_interval: must be >= 1ms (0 = default), got 1µs"},
		{"pool size", func(c *proxy.Config) { c.PoolSize = -3 }, "pool_size: must be >= 0 (0 = go-redis default), got -3"},
		{"pool size zero", func(c *proxy.Config) { c.PoolSize = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxy.DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.want)
			}
			if got := err.Error(); !strings.Contains(got, tt.want) {
				t.Fatalf("Validate() = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestConfig_ValidateReportsEveryProblem(t *testing.T) {
	cfg := proxy.Config{
		Listen:             "nowhere",
		Backend:            "memcached://localhost",
		LogFormat:          "xml",
		LogLevel:           "loud",
		MaxClients:         -1,
		MaxBulkBytes:       -1,
		ShutdownTimeout:    0,
		PubSubOutputLimit:  -1,
		KeyspaceEvents:     "sometimes",
		PoolSize:           -1,
		BackendReadTimeout: -1,
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want every field reported")
	}
	lines := strings.Split(err.Error(), "\n")
	wantPrefixes := []string{"listen: ", "backend: ", "log_format: ", "log_level: ", "max_clients: ",
		"max_bulk_bytes: ", "shutdown_timeout: ", "pubsub_output_limit: ", "keyspace_events: ", "backend_read_timeout: ", "instance_ttl: ", "pool_size: "}
	if got, want := len(lines), len(wantPrefixes); got != want {
		t.Fatalf("Validate() reported %d problems, want %d:\n%v", got, want, err)
	}
	for i, p := range wantPrefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Fatalf("problem %d = %q, want prefix %q", i, lines[i], p)
		}
	}
}

func TestConfig_ValidateHidesBackendPassword(t *testing.T) {
	cfg := proxy.DefaultConfig()
	cfg.Backend = "redis://user:s3cr3tpw@localhost:6379/notadb"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want bad db error")
	}
	if strings.Contains(err.Error(), "s3cr3tpw") {
		t.Fatalf("Validate() = %q, leaks the password", err)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qgate.yml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig_File(t *testing.T) {
	path := writeFile(t, `
listen: 0.0.0.0:7000
backend: redis://localhost:6379/1
log_format: json
max_clients: 50
shutdown_timeout: 1m30s
`)
	cfg, err := proxy.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig() = %v", err)
	}
	want := proxy.DefaultConfig()
	want.Listen = "0.0.0.0:7000"
	want.Backend = "redis://localhost:6379/1"
	want.LogFormat = "json"
	want.MaxClients = 50
	want.ShutdownTimeout = 90 * time.Second
	want.Dir = cfg.Dir
	if got := cfg; !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadConfig() = %+v, want %+v", got, want)
	}
}

func TestLoadConfig_EmptyFileKeepsDefaults(t *testing.T) {
	cfg, err := proxy.LoadConfig(writeFile(t, ""))
	if err != nil {
		t.Fatalf("LoadConfig() = %v", err)
	}
	want := proxy.DefaultConfig()
	want.Dir = cfg.Dir
	if got := cfg; !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadConfig() = %+v, want %+v", got, want)
	}
}

func TestLoadConfig_NotYAML(t *testing.T) {
	path := writeFile(t, "listen: [\n")
	_, err := proxy.LoadConfig(path)
	if err == nil {
		t.Fatal("LoadConfig() = nil error")
	}
	if got, want := err.Error(), "load config "+path+": yaml: "; !strings.HasPrefix(got, want) {
		t.Fatalf("LoadConfig() = %q, want prefix %q", got, want)
	}
	var fe *proxy.FileError
	if errors.As(err, &fe) {
		t.Fatalf("LoadConfig() = %T, want a plain error for a file that is not YAML", err)
	}
}

// TestLoadConfig_ReportsEveryProblem: each structural mistake gets its own line, in user words, with
// the line number, and the rest of the file is still read.
func TestLoadConfig_ReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"unknown field", "listen: :6380\nmax_client: 5\n", []string{`line 2: unknown field "max_client" (did you mean max_clients?)`}},
		{"unknown field far from any", "colour: blue\n", []string{`line 1: unknown field "colour"`}},
		{"dashes for underscores", "log-level: warn\n", []string{`line 1: unknown field "log-level" (did you mean log_level?)`}},
		{"unknown rule field", "queues:\n  - match: a\n    visiblity_timeout: 30s\n",
			[]string{`line 3: queues[0]: unknown field "visiblity_timeout" (did you mean visibility_timeout?)`}},
		{"unknown nested field", "queues:\n  - match: a\n    backoff: {initial: 1s, maxx: 5m}\n",
			[]string{`line 3: queues[0].backoff: unknown field "maxx" (did you mean max?)`}},
		{"bad duration", "shutdown_timeout: ten seconds\n", []string{`line 1: shutdown_timeout: must be a duration such as 30s or 1m30s, got "ten seconds"`}},
		{"duration without unit", "shutdown_timeout: 10\n", []string{`line 1: shutdown_timeout: must be a duration such as 30s or 1m30s, got "10"`}},
		{"bad integer", "log_level: info\nmax_clients: many\n", []string{`line 2: max_clients: must be an integer, got "many"`}},
		{"bad rule integer", "queues:\n  - {match: a}\n  - {match: b}\n  - match: c\n    max_attempts: three\n",
			[]string{`line 5: queues[2].max_attempts: must be an integer, got "three"`}},
		{"bad number", "queues:\n  - match: a\n    backoff: {jitter: lots}\n", []string{`line 3: queues[0].backoff.jitter: must be a number, got "lots"`}},
		{"bad boolean", "queues:\n  - match: a\n    envelope: maybe\n", []string{`line 3: queues[0].envelope: must be true or false, got "maybe"`}},
		{"bad dedup", "queues:\n  - match: a\n    dedup: [body]\n", []string{`line 3: queues[0].dedup: must be off, body, a JSON pointer or a mapping {key, window}, got a list`}},
		{"list expected", "channels: \"events.*\"\n", []string{`line 1: channels: must be a list, got "events.*"`}},
		{"mapping expected", "tls: yes\n", []string{`line 1: tls: must be a mapping (name: value), got "yes"`}},
		{"scalar expected", "listen: [a, b]\n", []string{`line 1: listen: must be a string, got a list`}},
		{"rights must be a list", "users:\n  - name: a\n    push: \"*\"\n", []string{`line 3: users[0].push: must be a list, got "*"`}},
		{"duplicate key", "log_level: warn\nlog_level: info\n", []string{`line 2: log_level: given twice (first on line 1)`}},
		{"merge key checked as the same fields", "base: &b {match: a, max_atempts: 2}\nqueues:\n  - <<: *b\n    format: json\n", []string{
			`line 1: unknown field "base"`,
			`line 1: queues[0]: unknown field "max_atempts" (did you mean max_attempts?)`}},
		{"not a mapping", "- listen\n", []string{`line 1: the file must be a mapping of settings (name: value), got a list`}},
		{"every problem at once", "max_client: 5\nmax_clients: many\nqueues:\n  - match: a\n    visiblity_timeout: 1s\n    max_attempts: x\n", []string{
			`line 1: unknown field "max_client" (did you mean max_clients?)`,
			`line 2: max_clients: must be an integer, got "many"`,
			`line 5: queues[0]: unknown field "visiblity_timeout" (did you mean visibility_timeout?)`,
			`line 6: queues[0].max_attempts: must be an integer, got "x"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := proxy.LoadConfig(writeFile(t, tt.body))
			var fe *proxy.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("LoadConfig() = %v, want a *FileError", err)
			}
			if got, want := fe.Problems, tt.want; !reflect.DeepEqual(got, want) {
				t.Fatalf("problems = %q, want %q", got, want)
			}
		})
	}
}

func TestLoadConfig_ReadsTheRestDespiteProblems(t *testing.T) {
	path := writeFile(t, "max_clients: many\nlog_level: warn\nlog_level: info\nlisten: :7000\nqueues:\n  - match: a\n    max_attempts: x\n  - match: b\n    format: json\n")
	cfg, err := proxy.LoadConfig(path)
	var fe *proxy.FileError
	if !errors.As(err, &fe) {
		t.Fatalf("LoadConfig() = %v, want a *FileError", err)
	}
	if got, want := cfg.MaxClients, proxy.DefaultMaxClients; got != want {
		t.Errorf("MaxClients = %d, want the default %d (the bad value is not read)", got, want)
	}
	if got, want := cfg.Listen, ":7000"; got != want {
		t.Errorf("Listen = %q, want %q (read despite the other problems)", got, want)
	}
	if got, want := len(cfg.Queues), 2; got != want {
		t.Fatalf("len(Queues) = %d, want %d", got, want)
	}
	if got, want := cfg.Queues[1].Format, "json"; got != want {
		t.Errorf("Queues[1].Format = %q, want %q", got, want)
	}
	if got, want := fe.Unread, []string{"max_clients", "queues[0].max_attempts"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Unread = %q, want %q", got, want)
	}
	if !fe.Covers("queues[0].max_attempts") || fe.Covers("queues[0].match") || !fe.Covers("max_clients") {
		t.Errorf("Covers: wrong for %q", fe.Unread)
	}
}

func TestConfig_Warnings(t *testing.T) {
	cfg, err := proxy.LoadConfig(writeFile(t, `queues:
  - match: "*"
    max_bytes: 10
  - match: "email_*"
    visibility_timeout: 30s
    backoff: {initial: 2s}
channels:
  - match: "audit.*"
    deliver: envelope
    envelope: false
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`queues[1] "email_*": visibility_timeout, backoff do nothing without delivery: at-least-once`,
		`queues[1] "email_*": never applies: queues[0] "*" comes first and matches every name it matches`,
		`channels[0] "audit.*": deliver: envelope does nothing with envelope: false (items are stored without an envelope, so consumers get the payload)`,
	}
	if got := cfg.Warnings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Warnings() = %q, want %q", got, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil (warnings are not errors)", err)
	}
}

func TestLoadConfig_MissingFile(t *testing.T) {
	_, err := proxy.LoadConfig(filepath.Join(t.TempDir(), "nope.yml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadConfig() = %v, want a not-exist error", err)
	}
}

func TestConfig_ApplyEnv(t *testing.T) {
	env := map[string]string{
		"QGATE_LISTEN":                 "0.0.0.0:7001",
		"QGATE_BACKEND":                "redis://localhost:6379",
		"QGATE_LOG_FORMAT":             "json",
		"QGATE_LOG_LEVEL":              "debug",
		"QGATE_MAX_CLIENTS":            "7",
		"QGATE_MAX_BULK_BYTES":         "1024",
		"QGATE_SHUTDOWN_TIMEOUT":       "3s",
		"QGATE_PUBSUB_OUTPUT_LIMIT":    "2048",
		"QGATE_CLIENT_OUTPUT_LIMIT":    "4096",
		"QGATE_BLOCKING_CONNS":         "2",
		"QGATE_POOL_SIZE":              "20",
		"QGATE_AUTH_FAILURE_DELAY":     "5ms",
		"QGATE_AUTH_FAILURE_MAX_DELAY": "1s",
		"QGATE_BACKEND_READ_TIMEOUT":   "2s",
		"QGATE_INSTANCE_TTL":           "20s",
		"QGATE_KEYSPACE_EVENTS":        "assume",
		"QGATE_BLOCKING_POLL_INTERVAL": "50ms",
	}
	cfg := proxy.DefaultConfig()
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatalf("ApplyEnv() = %v", err)
	}
	want := proxy.Config{
		Listen:                 "0.0.0.0:7001",
		Backend:                "redis://localhost:6379",
		LogFormat:              "json",
		LogLevel:               "debug",
		MaxClients:             7,
		MaxBulkBytes:           1024,
		ShutdownTimeout:        3 * time.Second,
		PubSubOutputLimit:      2048,
		ClientOutputLimit:      4096,
		BlockingConns:          2,
		PoolSize:               20,
		AuthFailureDelay:       5 * time.Millisecond,
		AuthFailureMaxDelay:    time.Second,
		BackendReadTimeout:     2 * time.Second,
		BackendDialTimeout:     proxy.DefaultBackendDialTimeout,
		InstanceTTL:            20 * time.Second,
		KeyspaceEvents:         "assume",
		BlockingPollInterval:   50 * time.Millisecond,
		BlockingSafetyInterval: proxy.DefaultBlockingSafety,
	}
	if got := cfg; !reflect.DeepEqual(got, want) {
		t.Fatalf("ApplyEnv() gave %+v, want %+v", got, want)
	}
}

func TestConfig_ApplyEnvUnsetKeepsValues(t *testing.T) {
	cfg := proxy.DefaultConfig()
	cfg.Listen = "from-file:1"
	if err := cfg.ApplyEnv(func(string) string { return "" }); err != nil {
		t.Fatalf("ApplyEnv() = %v", err)
	}
	if got, want := cfg.Listen, "from-file:1"; got != want {
		t.Fatalf("Listen = %q, want %q", got, want)
	}
}

func TestConfig_ApplyEnvReportsEveryBadValue(t *testing.T) {
	env := map[string]string{
		"QGATE_MAX_CLIENTS":      "lots",
		"QGATE_SHUTDOWN_TIMEOUT": "10",
		"QGATE_MAX_BULK_BYTES":   "1.5",
	}
	cfg := proxy.DefaultConfig()
	err := cfg.ApplyEnv(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("ApplyEnv() = nil, want errors")
	}
	for _, want := range []string{
		`QGATE_MAX_CLIENTS: invalid integer "lots"`,
		`QGATE_SHUTDOWN_TIMEOUT: invalid duration "10"`,
		`QGATE_MAX_BULK_BYTES: invalid integer "1.5"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("ApplyEnv() = %q, want it to contain %q", err, want)
		}
	}
}

func TestEnvName_UpperYAMLName(t *testing.T) {
	if got, want := proxy.EnvName("pubsub_output_limit"), "QGATE_PUBSUB_OUTPUT_LIMIT"; got != want {
		t.Fatalf("EnvName() = %q, want %q", got, want)
	}
}

func TestConfig_UsersAndTLS(t *testing.T) {
	dir := t.TempDir()
	hash := "$2a$04$0M7KFLY0vAvZ0fL4zJ0H8OQ0nD1m3Bq1kqz0F5C1Xh7rJ8q3y9y6a" // shape only; never verified here
	body := `users:
  - name: producer
    password_hash: "` + hash + `"
    push: ["email_*"]
  - name: worker
    password_hash: "` + hash + `"
    enabled: false
    pop: ["email_*"]
    subscribe: ["events.*"]
auth_failure_delay: 10ms
tls:
  cert_file: missing.pem
  key_file: missing-key.pem
  client_auth: sometimes
  min_version: "1.1"
backend_tls:
  ca_file: ca.pem
`
	path := filepath.Join(dir, "qgate.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := proxy.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if len(cfg.Users) != 2 || cfg.Users[0].Name != "producer" || cfg.Users[1].Enabled == nil || *cfg.Users[1].Enabled ||
		cfg.Users[1].Subscribe[0] != "events.*" || cfg.AuthFailureDelay != 10*time.Millisecond {
		t.Fatalf("users = %+v", cfg.Users)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("Validate = nil")
	}
	for _, want := range []string{
		"tls.cert_file: open " + filepath.Join(dir, "missing.pem"),
		`tls.client_auth: must be none, request or require, got "sometimes"`,
		`tls.min_version: must be 1.2 or 1.3, got "1.1"`,
		"backend_tls: needs a rediss:// backend URL",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() lacks %q:\n%v", want, err)
		}
	}
	for _, tc := range []struct {
		mutate func(*proxy.Config)
		want   string
	}{
		{func(c *proxy.Config) { c.Users[1].PasswordHash = "plain-text-password" }, "users[1].password_hash: not a bcrypt hash"},
		{func(c *proxy.Config) { c.Users[1].Name = "producer" }, `users[1].name: duplicate user "producer"`},
		{func(c *proxy.Config) { c.TLS = proxy.TLSConfig{CertFile: "a.pem", KeyFile: "b.pem", CertUser: true} }, "tls.cert_user: needs client certificates"},
		{func(c *proxy.Config) {
			c.TLS = proxy.TLSConfig{CertFile: "a.pem", KeyFile: "b.pem", ClientAuth: "require"}
		}, "tls.client_ca_file: required with client_auth: require"},
		{func(c *proxy.Config) { c.TLS = proxy.TLSConfig{KeyFile: "b.pem"} }, "tls.cert_file: missing"},
		{func(c *proxy.Config) { c.AuthFailureDelay = -time.Second }, "auth_failure_delay: must be >= 0"},
		{func(c *proxy.Config) { c.AuthFailureMaxDelay = time.Millisecond }, "auth_failure_max_delay: must be >= auth_failure_delay"},
	} {
		c := proxy.DefaultConfig()
		c.Users = append(c.Users, cfg.Users...)
		c.Users[1].PasswordHash = hash
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
		if err := c.Validate(); err != nil && strings.Contains(err.Error(), "plain-text-password") {
			t.Errorf("Validate() echoes a password_hash value: %v", err)
		}
	}
}
