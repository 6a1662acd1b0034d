package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// End-to-end tests of the HTTP listener (README "Operations"): metrics, probes, the JSON API, its
// authentication and the queue registry shared by instances, against a real redis-server.

// httpOn turns the HTTP listener on with a fast sampler.
func httpOn(c *proxy.Config) {
	c.HTTP = "127.0.0.1:0"
	c.MetricsSampleInterval = 100 * time.Millisecond
}

func httpBase(t *testing.T, q *proxytest.Qgate) string {
	t.Helper()
	a := q.Server.HTTPAddr()
	if a == nil {
		t.Fatal("HTTP listener not started")
	}
	return "http://" + a.String()
}

// httpDo sends a request and returns the status and body.
func httpDo(t *testing.T, method, url, user, pass, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape parses /metrics.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpDo(t, "GET", base+"/metrics", "", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// metricValue returns the value of the series of name with exactly the given labels (-1: none).
func metricValue(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels)/2 {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestHTTPMetrics_CountersMoveAfterPushAndPop(t *testing.T) {
	e := e2eStart(t, httpOn)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	base := httpBase(t, e.Qgate)
	if err := c.RPush(ctx, "orders", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.LPop(ctx, "orders").Result(); err != nil || got != "a" {
		t.Fatalf("LPOP = %q, %v", got, err)
	}
	_ = c.Do(ctx, "nosuchcommand").Err()

	mf := scrape(t, base)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"qgate_commands_total", []string{"command", "rpush", "result", "ok"}, 1},
		{"qgate_commands_total", []string{"command", "lpop", "result", "ok"}, 1},
		{"qgate_commands_total", []string{"command", "unknown", "result", "error"}, 1},
		{"qgate_command_duration_seconds", []string{"command", "lpop"}, 1},
		{"qgate_pushed_total", []string{"queue", "orders"}, 2},
		{"qgate_popped_total", []string{"queue", "orders"}, 1},
		{"qgate_connections", nil, 1},
		{"qgate_lost_items_total", nil, 0},
		{"qgate_blocked_clients", nil, 0},
	} {
		if got := metricValue(mf, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, name := range []string{"go_goroutines", "qgate_lease_transitions_total", "qgate_auth_failures_total", "qgate_backend_errors_total", "qgate_returned_items_total", "qgate_subscriptions"} {
		if mf[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}
	// The queue gauges come from the sampler (every 100ms here), once the registry has the queue.
	e2eEventually(t, "qgate_queue_ready{queue=orders} = 1", func() bool {
		return metricValue(scrape(t, base), "qgate_queue_ready", "queue", "orders") == 1
	})
	e2eEventually(t, "INFO known_queues:1", func() bool {
		return e2eInfoField(c.Info(ctx, "qgate").Val(), "known_queues") == "1"
	})
}

func TestHTTPMetrics_QueueCapFoldsIntoOther(t *testing.T) {
	e := e2eStart(t, httpOn, func(c *proxy.Config) { c.MetricsMaxQueues = 2 })
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	base := httpBase(t, e.Qgate)
	for _, q := range []string{"q1", "q2", "q3", "q4"} {
		if err := c.RPush(ctx, q, "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	mf := scrape(t, base)
	for _, tc := range []struct {
		queue string
		want  float64
	}{{"q1", 1}, {"q2", 1}, {"q3", -1}, {"q4", -1}, {"other", 2}} {
		if got := metricValue(mf, "qgate_pushed_total", "queue", tc.queue); got != tc.want {
			t.Errorf("qgate_pushed_total{queue=%q} = %v, want %v", tc.queue, got, tc.want)
		}
	}
	e2eEventually(t, "gauges of q1, q2 and other (q3+q4)", func() bool {
		mf := scrape(t, base)
		return metricValue(mf, "qgate_queue_ready", "queue", "q1") == 1 &&
			metricValue(mf, "qgate_queue_ready", "queue", "q2") == 1 &&
			metricValue(mf, "qgate_queue_ready", "queue", "other") == 2 &&
			metricValue(mf, "qgate_queue_ready", "queue", "q3") == -1
	})
}

func TestHTTPReady_BackendFrozenAndBack(t *testing.T) {
	e := e2eStart(t, httpOn, func(c *proxy.Config) { c.BackendReadTimeout = 300 * time.Millisecond })
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	base := httpBase(t, e.Qgate)
	if code, body := httpDo(t, "GET", base+"/healthz", "", "", ""); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := httpDo(t, "GET", base+"/readyz", "", "", ""); code != 200 {
		t.Fatalf("/readyz = %d %q, want 200", code, body)
	}
	e.Redis.Freeze()
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			e.Redis.Thaw()
		}
	})
	var body string
	e2eEventually(t, "/readyz 503 while Redis is frozen", func() bool {
		var code int
		code, body = httpDo(t, "GET", base+"/readyz", "", "", "")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "backend") {
		t.Errorf("/readyz body %q does not give the reason", body)
	}
	if code, _ := httpDo(t, "GET", base+"/healthz", "", "", ""); code != 200 {
		t.Errorf("/healthz = %d while Redis is frozen, want 200", code)
	}
	if err := c.LLen(ctx, "q").Err(); err == nil || !strings.Contains(err.Error(), "backend unavailable") {
		t.Errorf("LLEN while Redis is frozen: %v, want ERR backend unavailable", err)
	}
	if got := metricValue(scrape(t, base), "qgate_backend_errors_total"); got < 1 {
		t.Errorf("qgate_backend_errors_total = %v, want >= 1", got)
	}
	e.Redis.Thaw()
	thawed = true
	e2eEventually(t, "/readyz 200 once Redis answers again", func() bool {
		code, _ := httpDo(t, "GET", base+"/readyz", "", "", "")
		return code == http.StatusOK
	})
}

func TestHTTPListener_StopsWithServer(t *testing.T) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	httpOn(&cfg)
	q := proxytest.StartQgate(t, cfg)
	base := httpBase(t, q)
	if code, _ := httpDo(t, "GET", base+"/healthz", "", "", ""); code != http.StatusOK {
		t.Fatalf("/healthz = %d before Shutdown", code)
	}
	if err := q.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the HTTP listener still answers after Shutdown")
	}
}

// queueInfo is an entry of GET /api/v1/queues.
type queueInfo struct {
	Name     string `json:"name"`
	Ready    int64  `json:"ready"`
	InFlight int64  `json:"in_flight"`
	Delayed  int64  `json:"delayed"`
	Dead     int64  `json:"dead"`
	Delivery string `json:"delivery"`
	Rule     string `json:"rule"`
}

func decodeJSON[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

func TestHTTPAPI_DeadLetterRoundTrip(t *testing.T) {
	rule := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: time.Hour, MaxAttempts: ptr(1),
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}
	e := e2eStart(t, httpOn, func(c *proxy.Config) { c.Queues = []policy.Rule{rule} })
	ctx := e2eCtx(t)
	base := httpBase(t, e.Qgate)
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "j1", "j2").Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		item, err := c.LPop(ctx, "jobs").Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Do(ctx, "qnack", "jobs", mustReceipt(t, item)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RPush(ctx, "jobs", "j3").Err(); err != nil {
		t.Fatal(err)
	}

	var list struct{ Queues []queueInfo }
	e2eEventually(t, "jobs listed by the API", func() bool {
		code, body := httpDo(t, "GET", base+"/api/v1/queues", "", "", "")
		list = decodeJSON[struct{ Queues []queueInfo }](t, body)
		return code == 200 && len(list.Queues) == 1
	})
	if got, want := list.Queues[0], (queueInfo{Name: "jobs", Ready: 1, Dead: 2, Delivery: "at-least-once", Rule: list.Queues[0].Rule}); got != want {
		t.Errorf("listed %+v, want %+v", got, want)
	}

	code, body := httpDo(t, "GET", base+"/api/v1/queues/jobs", "", "", "")
	if got := decodeJSON[queueInfo](t, body); code != 200 || got.Ready != 1 || got.Dead != 2 {
		t.Errorf("detail = %d %s", code, body)
	}

	code, body = httpDo(t, "GET", base+"/api/v1/queues/jobs/dead?count=1", "", "", "")
	dead := decodeJSON[struct {
		Dead []struct {
			Reason   string `json:"reason"`
			Attempts int    `json:"attempts"`
			Payload  string `json:"payload"`
			ID       string `json:"id"`
		}
	}](t, body)
	if code != 200 || len(dead.Dead) != 1 || dead.Dead[0].Payload != "j1" || dead.Dead[0].Reason != "nack" || dead.Dead[0].ID == "" {
		t.Errorf("dead = %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", base+"/api/v1/queues/jobs/dead?count=0", "", "", ""); code != http.StatusBadRequest {
		t.Errorf("count=0: %d %s, want 400", code, body)
	}

	code, body = httpDo(t, "POST", base+"/api/v1/queues/jobs/redrive", "", "", `{"count":1}`)
	if got := decodeJSON[struct{ Redriven int64 }](t, body); code != 200 || got.Redriven != 1 {
		t.Errorf("redrive = %d %s", code, body)
	}
	if got, want := e.Direct.LLen(ctx, "jobs").Val(), int64(2); got != want {
		t.Errorf("ready after redrive = %d, want %d", got, want)
	}

	code, body = httpDo(t, "DELETE", base+"/api/v1/queues/jobs/dead", "", "", "")
	if got := decodeJSON[struct{ Purged int64 }](t, body); code != 200 || got.Purged != 1 {
		t.Errorf("purge = %d %s", code, body)
	}
	if got := e.Direct.Exists(ctx, rdb.DeadKey("jobs")).Val(); got != 0 {
		t.Errorf("dead list still exists after purge")
	}

	code, body = httpDo(t, "GET", base+"/api/v1/clients", "", "", "")
	clients := decodeJSON[struct {
		Clients []struct {
			ID       int64 `json:"id"`
			Protocol int   `json:"protocol"`
		}
	}](t, body)
	if code != 200 || len(clients.Clients) != 1 || clients.Clients[0].Protocol != 3 {
		t.Errorf("clients = %d %s", code, body)
	}
	if code, _ := httpDo(t, "GET", base+"/api/v1/queues/bad%7Dname", "", "", ""); code != http.StatusBadRequest {
		t.Errorf("invalid queue name: %d, want 400", code)
	}
}

func TestHTTPAPI_BasicAuthNeedsAdminRight(t *testing.T) {
	const pwAdmin, pwJobs, pwWorker = "admin-pw", "jobs-pw", "worker-pw"
	e := e2eStart(t, httpOn, func(c *proxy.Config) {
		c.Users = []auth.UserConfig{
			{Name: "admin", PasswordHash: authHash(t, pwAdmin), Admin: []string{"*"}, Push: []string{"*"}},
			{Name: "jobsadmin", PasswordHash: authHash(t, pwJobs), Admin: []string{"jobs*"}},
			{Name: "worker", PasswordHash: authHash(t, pwWorker), Pop: []string{"*"}},
		}
		c.AuthFailureDelay = time.Millisecond
		c.AuthFailureMaxDelay = time.Millisecond
	})
	ctx := e2eCtx(t)
	base := httpBase(t, e.Qgate)
	c := e.Client(t, 3, func(o *redis.Options) { o.Username, o.Password = "admin", pwAdmin })
	for _, q := range []string{"jobs", "mail"} {
		if err := c.RPush(ctx, q, "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user, pass, path string
		want             int
	}{
		{"", "", "/api/v1/queues/jobs", http.StatusUnauthorized},
		{"worker", "wrong", "/api/v1/queues/jobs", http.StatusUnauthorized},
		{"worker", pwWorker, "/api/v1/queues/jobs", http.StatusForbidden},
		{"jobsadmin", pwJobs, "/api/v1/queues/mail", http.StatusForbidden},
		{"jobsadmin", pwJobs, "/api/v1/queues/jobs", http.StatusOK},
		{"jobsadmin", pwJobs, "/api/v1/clients", http.StatusForbidden},
		{"admin", pwAdmin, "/api/v1/clients", http.StatusOK},
		{"admin", pwAdmin, "/api/v1/queues/mail", http.StatusOK},
		{"", "", "/metrics", http.StatusOK},
		{"", "", "/healthz", http.StatusOK},
	} {
		if code, body := httpDo(t, "GET", base+tc.path, tc.user, tc.pass, ""); code != tc.want {
			t.Errorf("GET %s as %q: %d %s, want %d", tc.path, tc.user, code, body, tc.want)
		}
	}
	// Lists show only the queues the user may admin.
	e2eEventually(t, "jobsadmin lists jobs only", func() bool {
		_, body := httpDo(t, "GET", base+"/api/v1/queues", "jobsadmin", pwJobs, "")
		l := decodeJSON[struct{ Queues []queueInfo }](t, body)
		return len(l.Queues) == 1 && l.Queues[0].Name == "jobs"
	})
	if got := metricValue(scrape(t, base), "qgate_auth_failures_total"); got < 1 {
		t.Errorf("qgate_auth_failures_total = %v, want >= 1", got)
	}
}

func TestHTTPAuth_AllCoversMetrics(t *testing.T) {
	const pw = "pw"
	e := e2eStart(t, httpOn, func(c *proxy.Config) {
		c.HTTPAuth = proxy.HTTPAuthAll
		c.Users = []auth.UserConfig{{Name: "u", PasswordHash: authHash(t, pw), Push: []string{"*"}}}
	})
	base := httpBase(t, e.Qgate)
	if code, _ := httpDo(t, "GET", base+"/metrics", "", "", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %d, want 401", code)
	}
	if code, _ := httpDo(t, "GET", base+"/readyz", "u", pw, ""); code != http.StatusOK {
		t.Errorf("/readyz with credentials: %d, want 200", code)
	}
}

func TestHTTPRegistry_SharedByTwoInstances(t *testing.T) {
	r := proxytest.StartRedis(t)
	start := func() *proxytest.Qgate {
		cfg := proxy.DefaultConfig()
		cfg.Backend = r.URL()
		httpOn(&cfg)
		return proxytest.StartQgate(t, cfg)
	}
	a, b := start(), start()
	ctx := e2eCtx(t)
	if err := a.Client(t).RPush(ctx, "shared-q", "x").Err(); err != nil {
		t.Fatal(err)
	}
	baseB := httpBase(t, b)
	e2eEventually(t, "B lists the queue pushed through A", func() bool {
		_, body := httpDo(t, "GET", baseB+"/api/v1/queues", "", "", "")
		l := decodeJSON[struct{ Queues []queueInfo }](t, body)
		return len(l.Queues) == 1 && l.Queues[0].Name == "shared-q" && l.Queues[0].Ready == 1
	})
	e2eEventually(t, "B's gauges show it", func() bool {
		return metricValue(scrape(t, baseB), "qgate_queue_ready", "queue", "shared-q") == 1
	})
	if got := r.Client(t).ZScore(context.Background(), rdb.QueuesKey, "shared-q").Val(); got <= 0 {
		t.Errorf("registry score of shared-q = %v", got)
	}
}
