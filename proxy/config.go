package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
	"gopkg.in/yaml.v3"

	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
)

// EnvPrefix prefixes the environment variable of every config field: QGATE_<UPPER_YAML_NAME>.
const EnvPrefix = "QGATE_"

// Config is qgate's configuration. Precedence: DefaultConfig < YAML file < environment < flags.
// Scalar fields are settable from the environment by name (see ApplyEnv); nested sections are
// YAML only.
type Config struct {
	Listen            string        `yaml:"listen"`              // host:port of the RESP listener
	Backend           string        `yaml:"backend"`             // backend URL; "" = embedded in-memory Redis
	LogFormat         string        `yaml:"log_format"`          // text | json
	LogLevel          string        `yaml:"log_level"`           // debug | info | warn | error
	MaxClients        int           `yaml:"max_clients"`         // connected clients beyond this are refused
	MaxBulkBytes      int64         `yaml:"max_bulk_bytes"`      // largest bulk string a client may send (proto-max-bulk-len)
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`    // how long SIGTERM waits for a drain
	PubSubOutputLimit int64         `yaml:"pubsub_output_limit"` // bytes queued for a slow subscriber before it is disconnected
	ClientOutputLimit int64         `yaml:"client_output_limit"` // bytes of unwritten replies before a client is disconnected; 0 = no limit
	// BlockingConns is ignored (accepted so old config files still load): blocked pops no longer hold
	// backend connections of their own (proxy/DESIGN.md, "Blocked pops").
	BlockingConns int `yaml:"blocking_conns"`
	// Blocked pops (proxy/queue/wait): KeyspaceEvents is "auto" (read notify-keyspace-events on every
	// master and add the missing flags Kgl; poll where CONFIG is refused), "assume" (CONFIG is disabled
	// but the flags are set: subscribe without checking) or "off" (poll only). BlockingPollInterval is
	// the poll of waited keys where notifications are off; BlockingSafetyInterval the slow re-check of
	// every waited key in keyspace mode (missed notifications). 0: the default.
	KeyspaceEvents         string        `yaml:"keyspace_events"`
	BlockingPollInterval   time.Duration `yaml:"blocking_poll_interval"`
	BlockingSafetyInterval time.Duration `yaml:"blocking_safety_interval"`
	PoolSize               int           `yaml:"pool_size"` // backend pool size for ordinary commands; 0 = go-redis default

	// Backend timeouts (0 = none). A read timeout makes a client's command fail with "outcome unknown"
	// while Redis stalls instead of waiting for it; items of pops that time out are given back once
	// Redis answers again (proxy/DESIGN.md, "Delivery without loss").
	BackendReadTimeout  time.Duration `yaml:"backend_read_timeout"`
	BackendWriteTimeout time.Duration `yaml:"backend_write_timeout"`
	BackendDialTimeout  time.Duration `yaml:"backend_dial_timeout"`
	// InstanceTTL is how long an instance may go without a heartbeat before the others take it for
	// dead and give back the items it had popped but not delivered.
	InstanceTTL time.Duration `yaml:"instance_ttl"`
	// ClusterRefreshInterval is how often a Cluster backend's slot map is refreshed when nothing
	// failed (0: DefaultClusterRefresh); errors that mean it is stale refresh it at once
	// (proxy/DESIGN.md "Cluster failover").
	ClusterRefreshInterval time.Duration `yaml:"cluster_refresh_interval"`

	Queues   []policy.Rule `yaml:"queues"`   // per-queue rules, first match wins (see policy.Rule)
	Channels []policy.Rule `yaml:"channels"` // per-channel rules for PUBLISH and SUBSCRIBE

	Users []auth.UserConfig `yaml:"users"` // none: qgate is open (no authentication)
	// AuthFailureDelay delays a failed login's reply; it doubles with each recent failure from the same
	// address up to AuthFailureMaxDelay (0 turns the slow-down off). Correct logins never wait.
	AuthFailureDelay    time.Duration `yaml:"auth_failure_delay"`
	AuthFailureMaxDelay time.Duration `yaml:"auth_failure_max_delay"`

	// Observability (README "Operations"; zero values are the defaults, see config_http.go).
	HTTP                  string        `yaml:"http"`                    // host:port of the HTTP listener; "" = off
	HTTPAuth              string        `yaml:"http_auth"`               // api (default) | all
	MetricsMaxQueues      int           `yaml:"metrics_max_queues"`      // queues with series of their own (0 = 1000)
	MetricsSampleInterval time.Duration `yaml:"metrics_sample_interval"` // queue gauges' sampling period (0 = 5s)

	TLS        TLSConfig        `yaml:"tls"`         // TLS on the client listener
	BackendTLS BackendTLSConfig `yaml:"backend_tls"` // options for rediss:// backends

	// Dir is the directory of the config file; relative schema paths are resolved against it.
	Dir string `yaml:"-"`
}

// Default values of Config.
const (
	DefaultListen             = "127.0.0.1:6380"
	DefaultMaxClients         = 10000
	DefaultMaxBulkBytes       = 512 << 20 // Redis proto-max-bulk-len
	DefaultShutdownTimeout    = 10 * time.Second
	DefaultPubSubOutputLimit  = 32 << 20 // Redis client-output-buffer-limit pubsub hard limit
	DefaultKeyspaceEvents     = "auto"
	DefaultBlockingPoll       = 100 * time.Millisecond
	DefaultBlockingSafety     = 5 * time.Second
	DefaultBackendDialTimeout = 5 * time.Second
	DefaultInstanceTTL        = 10 * time.Second
	DefaultClusterRefresh     = 10 * time.Second
)

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		Listen:                 DefaultListen,
		LogFormat:              "text",
		LogLevel:               "info",
		MaxClients:             DefaultMaxClients,
		MaxBulkBytes:           DefaultMaxBulkBytes,
		ShutdownTimeout:        DefaultShutdownTimeout,
		PubSubOutputLimit:      DefaultPubSubOutputLimit,
		KeyspaceEvents:         DefaultKeyspaceEvents,
		BlockingPollInterval:   DefaultBlockingPoll,
		BlockingSafetyInterval: DefaultBlockingSafety,
		BackendDialTimeout:     DefaultBackendDialTimeout,
		InstanceTTL:            DefaultInstanceTTL,
		AuthFailureDelay:       auth.DefaultBaseDelay,
		AuthFailureMaxDelay:    auth.DefaultMaxDelay,
	}
}

// Validate reports every invalid field at once, each prefixed with its YAML path.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}

	if err := checkHostPort(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.Backend != "" {
		if _, _, err := parseBackendURL(c.Backend); err != nil {
			bad("backend", "%v", err)
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "must be text or json, got %q", c.LogFormat)
	}
	if _, err := c.SlogLevel(); err != nil {
		bad("log_level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	positive := func(path string, v int64) {
		if v <= 0 {
			bad(path, "must be > 0, got %d", v)
		}
	}
	positive("max_clients", int64(c.MaxClients))
	positive("max_bulk_bytes", c.MaxBulkBytes)
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be > 0, got %s", c.ShutdownTimeout)
	}
	positive("pubsub_output_limit", c.PubSubOutputLimit)
	if c.ClusterRefreshInterval < 0 {
		bad("cluster_refresh_interval", "must be >= 0 (0 = %s), got %s", DefaultClusterRefresh, c.ClusterRefreshInterval)
	}
	if c.ClientOutputLimit < 0 {
		bad("client_output_limit", "must be >= 0 (0 = no limit), got %d", c.ClientOutputLimit)
	}
	switch c.KeyspaceEvents {
	case "", "auto", "assume", "off":
	default:
		bad("keyspace_events", "must be auto, assume or off, got %q", c.KeyspaceEvents)
	}
	for _, f := range []struct {
		path string
		d    time.Duration
	}{{"blocking_poll_interval", c.BlockingPollInterval}, {"blocking_safety_interval", c.BlockingSafetyInterval}} {
		if f.d < 0 || f.d > 0 && f.d < time.Millisecond {
			bad(f.path, "must be >= 1ms (0 = default), got %s", f.d)
		}
	}
	for _, f := range []struct {
		path string
		d    time.Duration
	}{{"backend_read_timeout", c.BackendReadTimeout}, {"backend_write_timeout", c.BackendWriteTimeout},
		{"backend_dial_timeout", c.BackendDialTimeout}} {
		if f.d < 0 {
			bad(f.path, "must be >= 0 (0 = none), got %s", f.d)
		}
	}
	if c.InstanceTTL < time.Second {
		bad("instance_ttl", "must be >= 1s, got %s", c.InstanceTTL)
	}
	if c.PoolSize < 0 {
		bad("pool_size", "must be >= 0 (0 = go-redis default), got %d", c.PoolSize)
	}
	if _, err := policy.NewSet(c.Queues, c.Channels, c.Dir); err != nil {
		errs = append(errs, err) // each problem already carries its path (queues[0].schema: …)
	}
	if c.AuthFailureDelay < 0 {
		bad("auth_failure_delay", "must be >= 0 (0 = no slow-down), got %s", c.AuthFailureDelay)
	}
	if c.AuthFailureMaxDelay < c.AuthFailureDelay {
		bad("auth_failure_max_delay", "must be >= auth_failure_delay (%s), got %s", c.AuthFailureDelay, c.AuthFailureMaxDelay)
	}
	if _, err := auth.NewStore(c.Users); err != nil {
		errs = append(errs, err) // users[1].password_hash: …
	}
	if c.TLS.Enabled() || c.TLS != (TLSConfig{}) {
		if _, err := c.TLS.serverTLS(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.validateHTTP()...)
	if c.BackendTLS.Set() {
		if !isTLSBackend(c.Backend) {
			bad("backend_tls", "needs a rediss:// backend URL (rediss://, rediss+sentinel:// or rediss+cluster://)")
		} else if err := c.BackendTLS.apply(&tls.Config{}, c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with an optional host and a port in 0-65535 (0 = any free).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number 0-65535, got %q", port)
	}
	return nil
}

// SlogLevel is LogLevel as a slog.Level.
func (c Config) SlogLevel() (slog.Level, error) {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("parse log level: unknown level %q", c.LogLevel)
}

// LoadConfig reads a YAML config file over DefaultConfig. A file that cannot be read or is not YAML
// is an error of its own; otherwise every structural problem (unknown fields, values of the wrong
// type, duplicate keys) is reported at once in a *FileError, and the returned Config holds every
// field that could be read (the others keep their defaults), so Validate can report the rest.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	body, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("load config %s: %w", path, err)
	}
	cfg.Dir = filepath.Dir(path)
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return cfg, fmt.Errorf("load config %s: %w", path, err)
	}
	if len(doc.Content) == 0 { // empty file
		return cfg, nil
	}
	root := doc.Content[0]
	var badPaths []string
	problems, bad := checkNode(root, reflect.TypeFor[Config](), "", &badPaths) // reports and removes what cannot be read
	if !bad {
		if err := root.Decode(&cfg); err != nil {
			// A shape the walk does not know: report the decoder's own words rather than nothing.
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return cfg, fmt.Errorf("load config %s: %w", path, err)
			}
			problems = append(problems, te.Errors...)
		}
	}
	cfg.Dir = filepath.Dir(path)
	if len(problems) > 0 {
		return cfg, &FileError{File: path, Problems: problems, Unread: badPaths}
	}
	return cfg, nil
}

// FileError lists the structural problems of a config file, each "line N: path: message", in the
// order of the file (README "Configuration", check-config).
type FileError struct {
	File     string
	Problems []string
	Unread   []string // paths of the values that could not be read (they keep their defaults)
}

// Covers reports whether a problem Validate found at path (e.g. "users[0].password_hash") is about a
// value the file error already reports as unreadable, so it need not be reported twice.
func (e *FileError) Covers(path string) bool {
	for _, u := range e.Unread {
		if path == u || strings.HasPrefix(path, u+".") || strings.HasPrefix(path, u+"[") {
			return true
		}
	}
	return false
}

func (e *FileError) Error() string { return strings.Join(e.Problems, "\n") }

// checkNode walks a YAML node against the Go type it will be decoded into, using the yaml tags, and
// returns every problem with its line: unknown fields (with the nearest valid name), duplicate keys,
// lists or mappings where they do not belong, and scalars the decoder would refuse for the field's
// type (decided by yaml.v3 itself, by decoding the lone node). It removes what it reports from the
// tree (a bad field's key and value; a bad list item becomes null), so that decoding the rest cannot
// fail and every other field is read. bad reports that n itself cannot be decoded.
func checkNode(n *yaml.Node, t reflect.Type, path string, badPaths *[]string) (problems []string, bad bool) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, false // decodes to the zero value, as if the field were absent
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	at := func(format string, args ...any) ([]string, bool) {
		msg := fmt.Sprintf(format, args...)
		if path != "" {
			msg = path + ": " + msg
		}
		*badPaths = append(*badPaths, path)
		return []string{fmt.Sprintf("line %d: %s", n.Line, msg)}, true
	}
	custom := reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]())
	switch {
	case custom && n.Kind != yaml.MappingNode, t == durationType, t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map:
		if n.Kind != yaml.ScalarNode {
			return at("must be %s, got %s", typeWords(t), nodeWords(n))
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return at("must be %s, got %s", typeWords(t), nodeWords(n))
		}
		return nil, false
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return at("must be a list, got %s", nodeWords(n))
		}
		for i, item := range n.Content {
			p, bad := checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), badPaths)
			problems = append(problems, p...)
			if bad {
				n.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: item.Line}
			}
		}
		return problems, false
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return at("must be a mapping (name: value), got %s", nodeWords(n))
		}
		var kept []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			p, bad := checkNode(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), badPaths)
			problems = append(problems, p...)
			if !bad {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
		return problems, false
	}
	// A struct: a mapping of its yaml-tagged fields.
	if n.Kind != yaml.MappingNode {
		if path == "" {
			return at("the file must be a mapping of settings (name: value), got %s", nodeWords(n))
		}
		return at("must be a mapping (name: value), got %s", nodeWords(n))
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	seen := map[string]int{}
	var kept []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		ft, ok := fields[key.Value]
		switch first, dup := seen[key.Value]; {
		case key.ShortTag() == "!!merge": // <<: *defaults (or a list of them): the same fields
			merged := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				merged = val.Content
			}
			for _, m := range merged {
				p, _ := checkNode(m, t, path, badPaths)
				problems = append(problems, p...)
			}
			kept = append(kept, key, val)
		case !ok:
			msg := fmt.Sprintf("unknown field %q", key.Value)
			if s := nearest(key.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			if path != "" {
				msg = path + ": " + msg
			}
			problems = append(problems, fmt.Sprintf("line %d: %s", key.Line, msg))
		case dup:
			problems = append(problems, fmt.Sprintf("line %d: %s: given twice (first on line %d)", key.Line, joinPath(path, key.Value), first))
		default:
			seen[key.Value] = key.Line
			p, bad := checkNode(val, ft, joinPath(path, key.Value), badPaths)
			problems = append(problems, p...)
			if !bad {
				kept = append(kept, key, val)
			}
		}
	}
	n.Content = kept
	return problems, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// nearest returns the valid name closest to a misspelt one (edit distance at most 2, and less than
// the name's length), or "".
func nearest(name string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := levenshtein.ComputeDistance(strings.ToLower(name), v); d < bestD && d < len(name) {
			best, bestD = v, d
		}
	}
	return best
}

// typeWords says in user words what a field of type t holds.
func typeWords(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 30s or 1m30s"
	case t == reflect.TypeFor[policy.Dedup]():
		return "off, body, a JSON pointer or a mapping {key, window}"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr:
		return "a non-negative integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

// nodeWords describes what the file holds: a quoted scalar (shortened), "a list" or "a mapping".
func nodeWords(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}

// Warnings lists settings that are valid but do nothing (README "Queue and channel rules"); qgate
// logs them at start and check-config prints them without failing.
func (c Config) Warnings() []string {
	return policy.Warnings(c.Queues, c.Channels)
}

// EnvName is the environment variable for the config field with the given YAML name.
func EnvName(yamlName string) string {
	return EnvPrefix + strings.ToUpper(yamlName)
}

// ApplyEnv sets every scalar field whose variable QGATE_<UPPER_YAML_NAME> is non-empty,
// e.g. QGATE_LISTEN, QGATE_MAX_CLIENTS, QGATE_SHUTDOWN_TIMEOUT=30s. It reports every bad value.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	var errs []error
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		env := EnvName(name)
		raw := getenv(env)
		if raw == "" {
			continue
		}
		if err := setScalar(v.Field(i), raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", env, err))
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeFor[time.Duration]()

// setScalar parses raw into a string, bool, integer or duration field; other kinds (nested
// sections) are not settable from the environment.
func setScalar(f reflect.Value, raw string) error {
	switch {
	case f.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. 10s, 1m30s)", raw)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(raw)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", raw)
		}
		f.SetBool(b)
	case f.CanInt():
		n, err := strconv.ParseInt(raw, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", raw)
		}
		f.SetInt(n)
	default:
		return fmt.Errorf("cannot be set from the environment (use the config file)")
	}
	return nil
}
