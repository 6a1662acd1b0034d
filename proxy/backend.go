package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/rdb"
)

// Backend kinds reported in Backend.Kind.
const (
	BackendStandalone = "standalone"
	BackendSentinel   = "sentinel"
	BackendCluster    = "cluster"
	BackendEmbedded   = "embedded"
)

const (
	defaultRedisPort    = "6379"
	defaultSentinelPort = "26379"
	redacted            = "xxxxx"
)

// Backend is the Redis that qgate forwards to.
type Backend struct {
	Client  redis.UniversalClient
	Kind    string // "standalone", "sentinel", "cluster", "embedded"
	Addr    string // human description without password
	Cluster bool
	// ScriptFlags reports whether the backend understands Redis 7 script flags ("#!lua flags=…"):
	// when not (Redis before 7, the embedded miniredis), every client of b runs the rdb scripts in
	// their plain variant (rdb.UsePlainScripts; see rdb.Script).
	ScriptFlags bool
	opts        *redis.UniversalOptions // for NewClient
	close       func() error
	plainMu     sync.Mutex
	plain       []redis.UniversalClient // clients marked with rdb.UsePlainScripts, forgotten on Close
	guard       *sentinelGuard          // a Sentinel backend's switch-over fence (backend_sentinel.go)
}

// noRetries turns off go-redis's automatic retries: qgate never resends a command on its own. A
// retried RPUSH whose first attempt reached Redis would enqueue twice, and a retried LPOP would drop
// the item the first attempt popped; a failed command is reported to the client instead, as a
// connection error from Redis would be.
const noRetries = -1

// maxIdleConns bounds the main pool's idle connections: a burst (10,000 clients connecting and trying a
// non-blocking pop at once) may open PoolSize connections, but they do not stay open afterwards.
// Client batches use go-redis's separate pipeline pool.
const maxIdleConns = 4

// OpenBackend connects to the Redis at rawURL ("" starts an embedded in-memory Redis) and
// checks it answers PING. poolSize > 0 overrides the connection pool size.
func OpenBackend(ctx context.Context, rawURL string, poolSize int) (*Backend, error) {
	return openBackend(ctx, rawURL, poolSize, BackendTLSConfig{}, "", timeouts{})
}

// timeouts are the backend timeouts of Config (0 = none; go-redis's own defaults never apply).
type timeouts struct {
	read, write, dial time.Duration
	clusterRefresh    time.Duration // the Cluster map's periodic refresh (cluster_refresh_interval; 0: go-redis's)
}

// apply sets the timeouts the URL did not set itself.
func (t timeouts) apply(o *redis.UniversalOptions) {
	none := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1 // go-redis: no deadline
		}
		return d
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = none(t.read)
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = none(t.write)
	}
	if o.DialTimeout == 0 && t.dial > 0 {
		o.DialTimeout = t.dial
	}
}

// openBackend is OpenBackend with the backend_tls options (relative files resolved against dir),
// which apply to every kind of rediss:// backend: standalone, Sentinel (Sentinels and data nodes)
// and Cluster (every node).
func openBackend(ctx context.Context, rawURL string, poolSize int, btls BackendTLSConfig, dir string, tmo timeouts) (*Backend, error) {
	if rawURL == "" {
		return openEmbedded(ctx, poolSize)
	}
	opts, kind, err := parseBackendURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open backend: %w", err)
	}
	if btls.Set() {
		if opts.TLSConfig == nil {
			return nil, errors.New("open backend: backend_tls needs a rediss:// backend URL")
		}
		if err := btls.apply(opts.TLSConfig, dir); err != nil {
			return nil, fmt.Errorf("open backend: %w", err)
		}
	}
	if poolSize > 0 {
		opts.PoolSize = poolSize
	}
	opts.MaxRetries = noRetries
	tmo.apply(opts)
	if opts.MaxIdleConns == 0 {
		opts.MaxIdleConns = maxIdleConns
	}
	opts.MaintNotificationsConfig = noMaintNotifications()
	var guard *sentinelGuard
	if kind == BackendSentinel {
		guard = newSentinelGuard(opts) // backend_sentinel.go
	}
	client := newBackendClient(opts, tmo.clusterRefresh)
	b := &Backend{
		Client:  client,
		Kind:    kind,
		Addr:    describe(kind, opts),
		Cluster: kind == BackendCluster,
		opts:    opts,
		close:   client.Close,
		guard:   guard,
	}
	if guard != nil {
		client.AddHook(readonlyHook{guard})
		guard.watch()
		b.close = func() error {
			guard.Close()
			return client.Close()
		}
	}
	if err := b.ping(ctx); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("open backend: %w", err)
	}
	b.setScriptFlags(rdb.ScriptFlagsSupported(ctx, client))
	return b, nil
}

// setScriptFlags records whether the backend understands script flags and marks b.Client.
func (b *Backend) setScriptFlags(ok bool) {
	b.ScriptFlags = ok
	b.scriptsOn(b.Client)
}

// scriptsOn makes c, a client of b's backend, run the rdb scripts in the variant b's backend
// understands (see rdb.Script). Clients made by NewClient are set up already; other clients of the
// backend that run scripts (the multiplexer on b.Client) must be passed here.
func (b *Backend) scriptsOn(c redis.UniversalClient) {
	if !b.ScriptFlags {
		rdb.UsePlainScripts(c)
		b.plainMu.Lock()
		b.plain = append(b.plain, c)
		b.plainMu.Unlock()
	}
}

// Mux returns a multiplexer of b.Client's pipelines with at most leaders in flight (queue.Mux), set up
// to run the rdb scripts as b.Client does.
func (b *Backend) Mux(leaders int) *queue.Mux {
	m := queue.NewMux(b.Client, leaders)
	b.scriptsOn(m)
	return m
}

func openEmbedded(ctx context.Context, poolSize int) (*Backend, error) {
	mr := miniredis.NewMiniRedis()
	// The in-memory Redis listens on a loopback port: without a password any local process could reach
	// the queues there, past qgate's users, rights and validation. The password is random, kept only in
	// the client options and never logged. (miniredis can also serve over net.Pipe without a listener,
	// but an unbuffered pipe deadlocks go-redis pipelines larger than the server's read buffer.)
	pw, err := randomPassword()
	if err != nil {
		return nil, fmt.Errorf("open backend: embedded redis password: %w", err)
	}
	mr.RequireAuth(pw)
	if err := mr.Start(); err != nil {
		return nil, fmt.Errorf("open backend: start embedded redis: %w", err)
	}
	opts := &redis.UniversalOptions{Addrs: []string{mr.Addr()}, Password: pw, PoolSize: poolSize, MaxRetries: noRetries,
		MaintNotificationsConfig: noMaintNotifications()}
	client := redis.NewUniversalClient(opts)
	b := &Backend{
		Client: client,
		Kind:   BackendEmbedded,
		Addr:   "embedded in-memory redis at " + mr.Addr(),
		opts:   opts,
		close: func() error {
			err := client.Close()
			mr.Close()
			return err
		},
	}
	if err := b.ping(ctx); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("open backend: %w", err)
	}
	b.setScriptFlags(rdb.ScriptFlagsSupported(ctx, client)) // miniredis does not understand them
	return b, nil
}

// randomPassword returns 32 random bytes in hex.
func randomPassword() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// noMaintNotifications turns off go-redis's "auto" maintenance notifications: Redis before 8 rejects
// CLIENT MAINT_NOTIFICATIONS, and go-redis's fallback then rewrites the shared options from every
// connection's handshake, a data race between connections made by Client.Conn (the blocked-pop polls, pub/sub).
func noMaintNotifications() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

func (b *Backend) ping(ctx context.Context) error {
	if err := b.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping %s backend %s: %w", b.Kind, b.Addr, err)
	}
	return nil
}

// Close closes the client and, for the embedded backend, stops the in-memory Redis.
func (b *Backend) Close() error {
	if b.close == nil {
		return nil
	}
	err := b.close()
	b.close = nil
	b.plainMu.Lock()
	for _, c := range b.plain {
		rdb.ForgetClient(c)
	}
	b.plain = nil
	b.plainMu.Unlock()
	if err != nil {
		return fmt.Errorf("close backend: %w", err)
	}
	return nil
}

// describe names the backend for logs, never with credentials.
func describe(kind string, o *redis.UniversalOptions) string {
	addrs := strings.Join(o.Addrs, ",")
	switch kind {
	case BackendSentinel:
		return fmt.Sprintf("master %q via sentinel %s db %d", o.MasterName, addrs, o.DB)
	case BackendCluster:
		return "cluster " + addrs
	default:
		return fmt.Sprintf("%s db %d", addrs, o.DB)
	}
}

// ParseBackendURL turns a backend URL into go-redis options and the backend kind
// ("standalone", "sentinel" or "cluster"). Accepted forms:
//
//	redis://[user:pass@]host[:port][/db][?opts]       (rediss:// for TLS)
//	unix://[user:pass@]/path/to/sock[?db=N&opts]
//	redis+sentinel://[user:pass@]host1[:port1][,host2[:port2]...]/mastername[/db][?sentinel_username=u&sentinel_password=p&opts]
//	redis+cluster://[user:pass@]host1[:port1][,host2[:port2]...][?addr=host:port&opts]
//
// rediss+sentinel:// and rediss+cluster:// use TLS. opts are go-redis's URL options
// (dial_timeout, pool_size, protocol, …). The user and password always authenticate to the
// data nodes; Sentinel's own credentials go in sentinel_username and sentinel_password.
// Errors never contain the password.
func ParseBackendURL(rawURL string) (*redis.UniversalOptions, string, error) {
	opts, kind, err := parseBackendURL(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("parse backend URL: %w", err)
	}
	return opts, kind, nil
}

// parseBackendURL is ParseBackendURL without the "parse backend URL" prefix (Validate adds
// its own).
func parseBackendURL(rawURL string) (*redis.UniversalOptions, string, error) {
	secrets := urlSecrets(rawURL)
	opts, kind, err := parseBackendURLUnsafe(rawURL)
	if err != nil {
		return nil, "", redactErr(err, secrets)
	}
	return opts, kind, nil
}

func parseBackendURLUnsafe(rawURL string) (*redis.UniversalOptions, string, error) {
	if rawURL == "" {
		return nil, "", errors.New("empty URL")
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, "", errors.New("missing scheme (want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)")
	}
	switch scheme = strings.ToLower(scheme); scheme {
	case "redis", "rediss", "unix":
		if _, err := parseURL(rawURL); err != nil {
			return nil, "", err
		}
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, "", err
		}
		return fromOptions(o), BackendStandalone, nil
	case "redis+sentinel", "rediss+sentinel":
		o, err := parseSentinelURL(strings.TrimSuffix(scheme, "+sentinel"), rest)
		if err != nil {
			return nil, "", err
		}
		return o, BackendSentinel, nil
	case "redis+cluster", "rediss+cluster":
		o, err := parseClusterURL(strings.TrimSuffix(scheme, "+cluster"), rest)
		if err != nil {
			return nil, "", err
		}
		return o, BackendCluster, nil
	default:
		return nil, "", fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis+sentinel, redis+cluster)", scheme)
	}
}

// parseURL is url.Parse with errors that cannot echo credentials: url.Parse quotes the whole
// URL, and when the password is malformed its detail quotes pieces of the password. The
// detail is reported only from a parse of the URL without its userinfo.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err == nil {
		return u, nil
	}
	if _, stripped, ok := splitUserinfo(raw); ok {
		if _, err = url.Parse(stripped); err == nil {
			return nil, errors.New("malformed user name or password (percent-encode special characters)")
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return nil, fmt.Errorf("malformed URL: %w", ue.Err)
	}
	return nil, errors.New("malformed URL")
}

// splitUserinfo finds the userinfo between "://" and the last '@' before the query (where it
// is even when a password has an unescaped '/' or ':') and returns it and the URL without it.
func splitUserinfo(raw string) (userinfo, stripped string, ok bool) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", "", false
	}
	auth, _, _ := strings.Cut(rest, "?")
	i := strings.LastIndex(auth, "@")
	if i < 0 {
		return "", "", false
	}
	return rest[:i], scheme + "://" + rest[i+1:], true
}

// multiHost is a URL whose authority lists several comma-separated hosts.
type multiHost struct {
	user  *url.Userinfo
	hosts []string // host:port, default port filled in
	path  string
	query url.Values
}

// parseMultiHost splits scheme://[userinfo@]h1[:p1],h2[:p2]/path?query (rest is the part after
// "://"): url.Parse rejects most host lists, so the authority is split first and the URL is
// parsed with the first host alone.
func parseMultiHost(rest, defaultPort string) (*multiHost, error) {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hostlist = authority[:i+1], authority[i+1:]
	}
	if hostlist == "" {
		return nil, errors.New("no host")
	}
	var hosts []string
	for h := range strings.SplitSeq(hostlist, ",") {
		addr, err := hostPort(h, defaultPort)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, addr)
	}
	u, err := parseURL("redis://" + userinfo + hosts[0] + tail)
	if err != nil {
		return nil, err
	}
	if u.Fragment != "" {
		return nil, errors.New("unexpected #fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("malformed query string")
	}
	return &multiHost{user: u.User, hosts: hosts, path: u.Path, query: q}, nil
}

// hostPort validates one host[:port] of a host list and adds the default port.
func hostPort(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty host in host list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: "host" or "[v6]".
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defaultPort
		if strings.ContainsAny(host, "[]/") || (strings.Contains(host, ":") && !strings.HasPrefix(h, "[")) {
			return "", fmt.Errorf("bad host %q", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("bad host %q: empty host name", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad host %q: port must be 1-65535", h)
	}
	return net.JoinHostPort(host, port), nil
}

// rejectParams reports the first of names present in q.
func rejectParams(q url.Values, names ...string) error {
	for _, n := range names {
		if q.Has(n) {
			return fmt.Errorf("option %s is not allowed here", n)
		}
	}
	return nil
}

// parseSentinelURL handles redis+sentinel://: the host list is Sentinels, the path is
// /mastername[/db]; the remaining options go through go-redis's ParseFailoverURL.
func parseSentinelURL(base, rest string) (*redis.UniversalOptions, error) {
	m, err := parseMultiHost(rest, defaultSentinelPort)
	if err != nil {
		return nil, err
	}
	parts := strings.FieldsFunc(m.path, func(r rune) bool { return r == '/' })
	if len(parts) == 0 {
		return nil, errors.New("missing master name: want redis+sentinel://host:port[,host:port]/mastername[/db]")
	}
	if len(parts) > 2 {
		return nil, fmt.Errorf("bad path %q: want /mastername[/db]", m.path)
	}
	// master_name, username and password have a place in the URL itself; route_* and
	// replica_only would send writes to replicas (or make go-redis panic).
	if err := rejectParams(m.query, "master_name", "username", "password",
		"route_by_latency", "route_randomly", "replica_only"); err != nil {
		return nil, err
	}
	sentinelUser, sentinelPass := m.query.Get("sentinel_username"), m.query.Get("sentinel_password")
	m.query.Del("sentinel_username")
	m.query.Del("sentinel_password")
	m.query.Set("master_name", parts[0])
	for _, h := range m.hosts[1:] {
		m.query.Add("addr", h)
	}
	u := url.URL{Scheme: base, Host: m.hosts[0], RawQuery: m.query.Encode()}
	if len(parts) == 2 {
		u.Path = "/" + parts[1]
	}
	fo, err := redis.ParseFailoverURL(u.String())
	if err != nil {
		return nil, err
	}
	fo.SentinelUsername, fo.SentinelPassword = sentinelUser, sentinelPass
	fo.Username, fo.Password = userPassword(m.user)
	return fromFailoverOptions(fo), nil
}

// parseClusterURL handles redis+cluster://: every listed host (and every ?addr=) is a seed
// node; the options go through go-redis's ParseClusterURL.
func parseClusterURL(base, rest string) (*redis.UniversalOptions, error) {
	m, err := parseMultiHost(rest, defaultRedisPort)
	if err != nil {
		return nil, err
	}
	if p := strings.Trim(m.path, "/"); p != "" && p != "0" {
		return nil, fmt.Errorf("bad path %q: Redis Cluster has only database 0", m.path)
	}
	if err := rejectParams(m.query, "username", "password", "db"); err != nil {
		return nil, err
	}
	// ParseClusterURL has no skip_verify (ParseURL does): handle it here.
	skipVerify := false
	if m.query.Has("skip_verify") {
		switch v := m.query.Get("skip_verify"); v {
		case "true", "1":
			skipVerify = true
		case "false", "0", "":
		default:
			return nil, fmt.Errorf("invalid skip_verify boolean %q", v)
		}
		m.query.Del("skip_verify")
	}
	for _, h := range m.hosts[1:] {
		m.query.Add("addr", h)
	}
	u := url.URL{Scheme: base, Host: m.hosts[0], RawQuery: m.query.Encode()}
	co, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, err
	}
	co.Username, co.Password = userPassword(m.user)
	if co.TLSConfig != nil {
		// ParseClusterURL pins ServerName to the first seed; leave it empty so each node is
		// verified against its own address.
		co.TLSConfig.ServerName = ""
		co.TLSConfig.InsecureSkipVerify = skipVerify
		co.TLSConfig.MinVersion = tls.VersionTLS12 // as ParseURL sets
	} else if skipVerify {
		return nil, errors.New("skip_verify needs rediss+cluster://")
	}
	return fromClusterOptions(co), nil
}

func userPassword(u *url.Userinfo) (string, string) {
	if u == nil {
		return "", ""
	}
	p, _ := u.Password()
	return u.Username(), p
}

// urlSecrets returns the strings an error about rawURL must not show: the password (raw and
// decoded) and the sentinel_password option.
func urlSecrets(rawURL string) []string {
	var secrets []string
	add := func(s string) {
		if s == "" {
			return
		}
		secrets = append(secrets, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			secrets = append(secrets, d)
		}
		if d, err := url.QueryUnescape(s); err == nil && d != s {
			secrets = append(secrets, d)
		}
	}
	if userinfo, _, ok := splitUserinfo(rawURL); ok {
		if _, pass, ok := strings.Cut(userinfo, ":"); ok {
			add(pass)
		}
	}
	if _, query, ok := strings.Cut(rawURL, "?"); ok {
		for kv := range strings.SplitSeq(query, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && (k == "sentinel_password" || k == "password") {
				add(v)
			}
		}
	}
	return secrets
}

// redactErr replaces every secret in err's text.
func redactErr(err error, secrets []string) error {
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, redacted)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return errors.New(msg)
}

// RedactBackendURL returns rawURL with its password and sentinel_password replaced, for logs.
func RedactBackendURL(rawURL string) string {
	out := rawURL
	for _, s := range urlSecrets(rawURL) {
		out = strings.ReplaceAll(out, s, redacted)
	}
	return out
}

// fromOptions copies every field go-redis's ParseURL can set.
func fromOptions(o *redis.Options) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   []string{o.Addr}, // a unix socket path starts with '/', which go-redis dials as unix
		ClientName:              o.ClientName,
		DB:                      o.DB,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		ContextTimeoutEnabled:   o.ContextTimeoutEnabled,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
		DisableIdentity:         o.DisableIdentity,
		IdentitySuffix:          o.IdentitySuffix,
		UnstableResp3:           o.UnstableResp3,
	}
}

// fromFailoverOptions copies every field go-redis's ParseFailoverURL can set.
func fromFailoverOptions(o *redis.FailoverOptions) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   o.SentinelAddrs,
		MasterName:              o.MasterName,
		ClientName:              o.ClientName,
		DB:                      o.DB,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		SentinelUsername:        o.SentinelUsername,
		SentinelPassword:        o.SentinelPassword,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		ContextTimeoutEnabled:   o.ContextTimeoutEnabled,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
		DisableIdentity:         o.DisableIdentity,
		IdentitySuffix:          o.IdentitySuffix,
		UnstableResp3:           o.UnstableResp3,
	}
}

// fromClusterOptions copies every field go-redis's ParseClusterURL can set.
func fromClusterOptions(o *redis.ClusterOptions) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   o.Addrs,
		IsClusterMode:           true,
		ClientName:              o.ClientName,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		MaxRedirects:            o.MaxRedirects,
		ReadOnly:                o.ReadOnly,
		RouteByLatency:          o.RouteByLatency,
		RouteByLatencyTolerance: o.RouteByLatencyTolerance,
		RouteRandomly:           o.RouteRandomly,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
		FailingTimeoutSeconds:   o.FailingTimeoutSeconds,
	}
}

// WatchHealth logs the backend going down and coming back (README "Operations", "Logs"): one line on
// each transition, from what the client's own commands and dials see, never one per failed command.
// Down means a transport failure (refused, reset, timeout); a Redis error reply means it is up.
func (b *Backend) WatchHealth(log *slog.Logger) {
	if b.guard != nil {
		b.guard.log.Store(log)
	}
	b.Client.AddHook(&health{log: log, addr: b.Addr})
}

// health is the redis.Hook of WatchHealth.
type health struct {
	log  *slog.Logger
	addr string
	down atomic.Bool
	// okAt is when an operation last succeeded (Unix ns, refreshed at most every healthGrain). The
	// backend is down only after a failure with no success for healthQuiet: go-redis's pool keeps
	// returning its last dial error for a while after the backend is back, and dials retried since
	// before it came back fail late; neither may flap the state.
	okAt atomic.Int64
}

const (
	healthGrain = int64(10 * time.Millisecond)
	healthQuiet = int64(time.Second)
)

func (h *health) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now().UnixNano()
		c, err := next(ctx, network, addr)
		h.note(ctx, start, err)
		return c, err
	}
}

func (h *health) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now().UnixNano()
		err := next(ctx, cmd)
		h.note(ctx, start, err)
		return err
	}
}

func (h *health) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now().UnixNano()
		err := next(ctx, cmds)
		h.note(ctx, start, err)
		return err
	}
}

// note records the outcome of an operation begun at start. Failures that say nothing about the
// backend are ignored: the caller's cancelled context, a busy pool, a client closed at shutdown.
func (h *health) note(ctx context.Context, start int64, err error) {
	var re redis.Error
	switch {
	case err == nil || errors.Is(err, redis.Nil) || errors.As(err, &re):
		if now := time.Now().UnixNano(); now-h.okAt.Load() > healthGrain {
			h.okAt.Store(now)
		}
		if h.down.Load() && h.down.CompareAndSwap(true, false) {
			h.okAt.Store(time.Now().UnixNano())
			h.log.Info("backend back up", "backend", h.addr)
		}
	case ctx.Err() != nil, errors.Is(err, context.Canceled), errors.Is(err, redis.ErrClosed),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
	case start < h.okAt.Load() || time.Now().UnixNano()-h.okAt.Load() < healthQuiet:
	default:
		if !h.down.Load() && h.down.CompareAndSwap(false, true) {
			h.log.Warn("backend down", "backend", h.addr, "err", err)
		}
	}
}
