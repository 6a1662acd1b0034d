package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

func TestParseBackendURL(t *testing.T) {
	tests := []struct {
		url  string
		kind string
		want redis.UniversalOptions // only the fields compared below
		tls  bool
	}{
		{
			url:  "redis://localhost:6379",
			kind: "standalone",
			want: redis.UniversalOptions{Addrs: []string{"localhost:6379"}},
		},
		{
			url:  "redis://alice:s3cret@10.0.0.1:6390/3?pool_size=7&dial_timeout=2s",
			kind: "standalone",
			want: redis.UniversalOptions{Addrs: []string{"10.0.0.1:6390"}, Username: "alice", Password: "s3cret", DB: 3, PoolSize: 7, DialTimeout: 2 * time.Second},
		},
		{
			url:  "redis://:only%40pass@host", // password only, default port, escaped '@'
			kind: "standalone",
			want: redis.UniversalOptions{Addrs: []string{"host:6379"}, Password: "only@pass"},
		},
		{
			url:  "rediss://u:p@cache.example.com:6380/1",
			kind: "standalone",
			want: redis.UniversalOptions{Addrs: []string{"cache.example.com:6380"}, Username: "u", Password: "p", DB: 1},
			tls:  true,
		},
		{
			url:  "unix:///run/redis/redis.sock?db=2",
			kind: "standalone",
			want: redis.UniversalOptions{Addrs: []string{"/run/redis/redis.sock"}, DB: 2},
		},
		{
			url:  "unix://u:p@/run/redis.sock",
			kind: "standalone",
			want: redis.UniversalOptions{Addrs: []string{"/run/redis.sock"}, Username: "u", Password: "p"},
		},
		{
			url:  "redis+sentinel://s1:26379,s2:26380,s3/mymaster",
			kind: "sentinel",
			want: redis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26380", "s3:26379"}, MasterName: "mymaster"},
		},
		{
			url:  "redis+sentinel://app:pw@s1/orders/4?sentinel_username=sen&sentinel_password=spw&read_timeout=1s",
			kind: "sentinel",
			want: redis.UniversalOptions{
				Addrs: []string{"s1:26379"}, MasterName: "orders", DB: 4, Username: "app", Password: "pw",
				SentinelUsername: "sen", SentinelPassword: "spw", ReadTimeout: time.Second,
			},
		},
		{
			url:  "rediss+sentinel://[::1]:26379/m",
			kind: "sentinel",
			want: redis.UniversalOptions{Addrs: []string{"[::1]:26379"}, MasterName: "m"},
			tls:  true,
		},
		{
			url:  "redis+cluster://n1:7000,n2:7001,n3",
			kind: "cluster",
			want: redis.UniversalOptions{Addrs: []string{"n1:7000", "n2:7001", "n3:6379"}, IsClusterMode: true},
		},
		{
			url:  "redis+cluster://u:p@n1:7000?addr=n2:7001&max_redirects=5",
			kind: "cluster",
			want: redis.UniversalOptions{Addrs: []string{"n1:7000", "n2:7001"}, IsClusterMode: true, Username: "u", Password: "p", MaxRedirects: 5},
		},
		{
			url:  "redis+cluster://n1:7000",
			kind: "cluster",
			want: redis.UniversalOptions{Addrs: []string{"n1:7000"}, IsClusterMode: true},
		},
		{
			url:  "rediss+cluster://n1:7000,n2:7000/?skip_verify=true",
			kind: "cluster",
			want: redis.UniversalOptions{Addrs: []string{"n1:7000", "n2:7000"}, IsClusterMode: true},
			tls:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			opts, kind, err := proxy.ParseBackendURL(tt.url)
			if err != nil {
				t.Fatalf("ParseBackendURL() = %v", err)
			}
			if got, want := kind, tt.kind; got != want {
				t.Fatalf("kind = %q, want %q", got, want)
			}
			got := redis.UniversalOptions{
				Addrs: opts.Addrs, Username: opts.Username, Password: opts.Password, DB: opts.DB,
				MasterName: opts.MasterName, SentinelUsername: opts.SentinelUsername, SentinelPassword: opts.SentinelPassword,
				IsClusterMode: opts.IsClusterMode, PoolSize: opts.PoolSize, DialTimeout: opts.DialTimeout,
				ReadTimeout: opts.ReadTimeout, MaxRedirects: opts.MaxRedirects,
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("options = %+v, want %+v", got, tt.want)
			}
			if got, want := opts.TLSConfig != nil, tt.tls; got != want {
				t.Fatalf("TLS = %v, want %v", got, want)
			}
		})
	}
}

func TestParseBackendURL_ClusterTLSSkipVerify(t *testing.T) {
	opts, _, err := proxy.ParseBackendURL("rediss+cluster://n1:7000,n2:7000?skip_verify=true")
	if err != nil {
		t.Fatalf("ParseBackendURL() = %v", err)
	}
	if !opts.TLSConfig.InsecureSkipVerify {
		t.Fatal("InsecureSkipVerify = false, want true")
	}
	if got, want := opts.TLSConfig.ServerName, ""; got != want {
		t.Fatalf("ServerName = %q, want %q (each node verified by its own name)", got, want)
	}
}

func TestParseBackendURL_Errors(t *testing.T) {
	const pw = "hunter2pw"
	tests := []struct {
		url  string
		want string
	}{
		{"", "empty URL"},
		{"localhost:6379", "missing scheme"},
		{"http://u:" + pw + "@localhost", `unsupported scheme "http"`},
		{"redis://u:" + pw + "@localhost:notaport", "malformed URL"},
		{"redis://u:hun/ter2pw@localhost", "malformed user name or password"},   // unescaped '/'
		{"redis://u:hun%zzter2pw@localhost", "malformed user name or password"}, // bad escape
		{"redis://u:" + pw + "@local host", "malformed URL: invalid character"},
		{"redis://u:" + pw + "@localhost/x", "invalid database number"},
		{"redis://u:" + pw + "@localhost/1/2", "invalid URL path"},
		{"redis://u:" + pw + "@localhost?nope=1", "unexpected option: nope"},
		{"redis://u:" + pw + "@localhost?dial_timeout=soon", "invalid dial_timeout duration"},
		{"unix://u:" + pw + "@", "empty unix socket path"},
		{"redis+sentinel://u:" + pw + "@s1:26379", "missing master name"},
		{"redis+sentinel://u:" + pw + "@s1:26379/m/0/extra", "bad path"},
		{"redis+sentinel://s1/m?sentinel_password=" + pw + "&bogus=1", "unexpected option: bogus"},
		{"redis+sentinel://s1/m?sentinel_password=" + pw + "&route_randomly=true", "route_randomly is not allowed"},
		{"redis+sentinel://u:" + pw + "@s1,,s2/m", "empty host"},
		{"redis+sentinel://u:" + pw + "@/m", "no host"},
		{"redis+sentinel://u:" + pw + "@s1:0/m", "port must be 1-65535"},
		{"redis+sentinel://u:" + pw + "@s1/m/x", "invalid database number"},
		{"redis+cluster://u:" + pw + "@n1:7000/3", "only database 0"},
		{"redis+cluster://u:" + pw + "@n1:7000?password=" + pw, "password is not allowed"},
		{"redis+cluster://u:" + pw + "@n1:7000?skip_verify=true", "skip_verify needs rediss+cluster"},
		{"redis+cluster://u:" + pw + "@n1:7000?addr=nope", "unable to parse addr param"},
		{"redis+cluster://u:" + pw + "@n1:7000,n2:port", "bad host"},
		{"redis+cluster://u:" + pw + "@n1:7000#frag", "fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, _, err := proxy.ParseBackendURL(tt.url)
			if err == nil {
				t.Fatalf("ParseBackendURL() = nil error, want %q", tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "parse backend URL: ") {
				t.Fatalf("error %q lacks prefix %q", msg, "parse backend URL: ")
			}
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q, want it to contain %q", msg, tt.want)
			}
			for _, secret := range []string{pw, "hun", "ter2pw"} {
				if strings.Contains(msg, secret) {
					t.Fatalf("error %q contains the password", msg)
				}
			}
		})
	}
}

func TestRedactBackendURL_HidesPasswords(t *testing.T) {
	got := proxy.RedactBackendURL("redis+sentinel://app:pw1@s1:26379/m?sentinel_password=pw2&db=1")
	if want := "redis+sentinel://app:xxxxx@s1:26379/m?sentinel_password=xxxxx&db=1"; got != want {
		t.Fatalf("RedactBackendURL() = %q, want %q", got, want)
	}
}

// pushPop checks the backend works end to end: PING, then RPUSH and LPOP on a few keys (in
// different cluster slots).
func pushPop(t *testing.T, b *proxy.Backend) {
	t.Helper()
	ctx := context.Background()
	if err := b.Client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	for _, key := range []string{"email_queue", "q:{a}", "q:{b}", "q:{c}"} {
		if n, err := b.Client.RPush(ctx, key, "first", "second").Result(); err != nil || n != 2 {
			t.Fatalf("RPUSH %s = %d, %v; want 2", key, n, err)
		}
		if got, err := b.Client.LPop(ctx, key).Result(); err != nil || got != "first" {
			t.Fatalf("LPOP %s = %q, %v; want %q", key, got, err, "first")
		}
		if got, err := b.Client.LPop(ctx, key).Result(); err != nil || got != "second" {
			t.Fatalf("LPOP %s = %q, %v; want %q", key, got, err, "second")
		}
	}
}

func openBackend(t *testing.T, url string) *proxy.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := proxy.OpenBackend(ctx, url, 4)
	if err != nil {
		t.Fatalf("OpenBackend(%s) = %v", proxy.RedactBackendURL(url), err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return b
}

func checkKind(t *testing.T, b *proxy.Backend, kind string, cluster bool) {
	t.Helper()
	if got, want := b.Kind, kind; got != want {
		t.Fatalf("Kind = %q, want %q", got, want)
	}
	if got, want := b.Cluster, cluster; got != want {
		t.Fatalf("Cluster = %v, want %v", got, want)
	}
	_, isCluster := b.Client.(*redis.ClusterClient)
	_, isClient := b.Client.(*redis.Client)
	if isCluster != cluster || isClient == cluster {
		t.Fatalf("Client is %T, want cluster=%v", b.Client, cluster)
	}
}

func TestOpenBackend_Embedded(t *testing.T) {
	b := openBackend(t, "")
	checkKind(t, b, "embedded", false)
	if !strings.Contains(b.Addr, "embedded") {
		t.Fatalf("Addr = %q, want it to say embedded", b.Addr)
	}
	pushPop(t, b)
}

func TestOpenBackend_EmbeddedCloseStopsServer(t *testing.T) {
	b, err := proxy.OpenBackend(context.Background(), "", 0)
	if err != nil {
		t.Fatalf("OpenBackend() = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
}

func TestOpenBackend_Standalone(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t)
	b := openBackend(t, r.URL()+"/2")
	checkKind(t, b, "standalone", false)
	pushPop(t, b)
	// DB 2 was used, not DB 0.
	if n, err := r.Client(t).DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE db 0 = %d, %v; want 0", n, err)
	}
}

func TestOpenBackend_Password(t *testing.T) {
	t.Parallel()
	const pw = "correct-horse"
	r := proxytest.StartRedis(t, "--requirepass", pw)
	b := openBackend(t, "redis://:"+pw+"@"+r.Addr)
	pushPop(t, b)
	if strings.Contains(b.Addr, pw) {
		t.Fatalf("Addr = %q contains the password", b.Addr)
	}

	_, err := proxy.OpenBackend(context.Background(), "redis://:wrong-battery@"+r.Addr, 0)
	if err == nil {
		t.Fatal("OpenBackend() with a wrong password = nil error")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "open backend: ") || strings.Contains(msg, "wrong-battery") {
		t.Fatalf("OpenBackend() = %q, want prefix %q and no password", msg, "open backend: ")
	}
}

func TestOpenBackend_Unreachable(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t)
	url := "redis://:pw-unreachable@" + r.Addr + "?dial_timeout=1s&max_retries=-1"
	r.Stop()
	_, err := proxy.OpenBackend(context.Background(), url, 0)
	if err == nil {
		t.Fatal("OpenBackend() of a stopped server = nil error")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "open backend: ") || strings.Contains(msg, "pw-unreachable") {
		t.Fatalf("OpenBackend() = %q, want prefix %q and no password", msg, "open backend: ")
	}
}

func TestOpenBackend_Unix(t *testing.T) {
	t.Parallel()
	// Socket paths are limited to ~108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "qg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	proxytest.StartRedis(t, "--unixsocket", sock, "--unixsocketperm", "700")
	b := openBackend(t, "unix://"+sock+"?db=1")
	checkKind(t, b, "standalone", false)
	pushPop(t, b)
}

func TestOpenBackend_Sentinel(t *testing.T) {
	t.Parallel()
	master := proxytest.StartRedis(t)
	sentinel := proxytest.StartSentinel(t, master)
	b := openBackend(t, "redis+sentinel://"+sentinel+"/"+proxytest.SentinelMaster)
	checkKind(t, b, "sentinel", false)
	pushPop(t, b)
	// The write went to the master the Sentinel reports.
	ctx := context.Background()
	if err := b.Client.RPush(ctx, "via_sentinel", "x").Err(); err != nil {
		t.Fatalf("RPUSH: %v", err)
	}
	if n, err := master.Client(t).LLen(ctx, "via_sentinel").Result(); err != nil || n != 1 {
		t.Fatalf("LLEN on master = %d, %v; want 1", n, err)
	}
}

func TestOpenBackend_Cluster(t *testing.T) {
	t.Parallel()
	addrs := proxytest.StartCluster(t, 3)
	b := openBackend(t, "redis+cluster://"+strings.Join(addrs, ","))
	checkKind(t, b, "cluster", true)
	pushPop(t, b)
	// Keys landed on more than one master.
	ctx := context.Background()
	cc := b.Client.(*redis.ClusterClient)
	for _, key := range []string{"k:{a}", "k:{b}", "k:{c}", "k:{d}", "k:{e}", "k:{f}"} {
		if err := cc.RPush(ctx, key, "v").Err(); err != nil {
			t.Fatalf("RPUSH %s: %v", key, err)
		}
	}
	var used atomic.Int32 // ForEachMaster runs the callbacks concurrently
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		if n > 0 {
			used.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	if used.Load() < 2 {
		t.Fatalf("keys on %d masters, want >= 2", used.Load())
	}
}

// TestEmbeddedBackend_NotReachableWithoutPassword: the embedded in-memory Redis listens on a loopback
// port, so it must refuse anyone who connects straight to it; only qgate knows its password, and the
// password appears neither in the logs nor in INFO.
func TestEmbeddedBackend_NotReachableWithoutPassword(t *testing.T) {
	cfg := proxy.DefaultConfig()
	cfg.Backend = ""
	q := proxytest.StartQgate(t, cfg)
	ctx := context.Background()

	_, desc := q.Server.BackendInfo()
	addr := regexp.MustCompile(`127\.0\.0\.1:[0-9]+`).FindString(desc)
	if addr == "" {
		t.Fatalf("BackendInfo addr %q names no loopback address", desc)
	}
	c, rd := dialRaw(t, addr)
	// miniredis reads only RESP arrays, not inline commands.
	send(t, c, "*3\r\n$5\r\nRPUSH\r\n$1\r\nq\r\n$8\r\nsidedoor\r\n")
	expect(t, rd, "-NOAUTH Authentication required.\r\n")
	send(t, c, "*2\r\n$4\r\nAUTH\r\n$5\r\nguess\r\n")
	expect(t, rd, "-WRONGPASS invalid username-password pair\r\n")
	send(t, c, "*2\r\n$4\r\nLPOP\r\n$1\r\nq\r\n")
	expect(t, rd, "-NOAUTH Authentication required.\r\n")

	rdb := q.Client(t)
	if got, err := rdb.LLen(ctx, "q").Result(); err != nil || got != 0 {
		t.Fatalf("LLEN q through qgate = %d, %v; want 0 (nothing came in by the side door)", got, err)
	}
	if got, err := rdb.RPush(ctx, "q", "front").Result(); err != nil || got != 1 {
		t.Fatalf("RPUSH through qgate = %d, %v; want 1", got, err)
	}
	if got, err := rdb.LPop(ctx, "q").Result(); err != nil || got != "front" {
		t.Fatalf("LPOP through qgate = %q, %v; want front", got, err)
	}

	pw := q.Server.EmbeddedPassword()
	if len(pw) < 32 {
		t.Fatalf("embedded password %d characters long, want a long random one", len(pw))
	}
	info, err := rdb.Info(ctx, "everything").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(info, pw) {
		t.Fatal("INFO shows the embedded backend's password")
	}
	if strings.Contains(q.Logs.String(), pw) {
		t.Fatal("the log shows the embedded backend's password")
	}
	if !strings.Contains(q.Logs.String(), addr) {
		t.Fatalf("the log does not name the embedded backend's address %s:\n%s", addr, q.Logs.String())
	}
}
