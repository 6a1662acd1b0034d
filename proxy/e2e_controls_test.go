package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Queue controls end to end (README "Queue controls"): max_length and overflow, delayed pushes (QPUSH
// and the rule's delay), QPAUSE and QRESUME, against a real redis-server.

var noEnvelope = func() *bool { f := false; return &f }()

// controlRules are the rules of these tests: raw values, so the backend's lists show them as pushed.
func controlRules(c *proxy.Config) {
	c.Queues = []policy.Rule{
		{Match: "capped", MaxLength: 3, Envelope: noEnvelope},
		{Match: "ring", MaxLength: 3, Overflow: "drop-oldest", Envelope: noEnvelope},
		{Match: "capped_dedup", MaxLength: 2, Dedup: policy.Dedup{Key: "body"}, Envelope: noEnvelope},
		{Match: "later", Delay: 300 * time.Millisecond, Envelope: noEnvelope},
		{Match: "jobs_alo", Delivery: "at-least-once"},
		{Match: "*", Envelope: noEnvelope},
	}
}

func TestMaxLength_RejectIsAllOrNothing(t *testing.T) {
	e := e2eStart(t, controlRules)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	if got, err := c.RPush(ctx, "capped", "a", "b").Result(); err != nil || got != 2 {
		t.Fatalf("RPUSH a b = %d, %v; want 2", got, err)
	}
	err := c.RPush(ctx, "capped", "c", "d").Err()
	if got, want := e2eErrText(err), "ERR queue 'capped' is full (max_length 3)"; got != want {
		t.Fatalf("RPUSH c d on a queue with room for 1: %q, want %q", got, want)
	}
	if got, want := e.Direct.LRange(ctx, "capped", 0, -1).Val(), []string{"a", "b"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("list after the refused push %v, want %v (nothing added)", got, want)
	}
	// Pipelined: one round trip, each push judged in order.
	cmds, _ := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, "capped", "c")
		p.RPush(ctx, "capped", "d")
		p.LPush(ctx, "capped", "e")
		return nil
	})
	if got, want := cmds[0].(*redis.IntCmd).Val(), int64(3); got != want {
		t.Fatalf("pipelined RPUSH c = %d, want %d", got, want)
	}
	for _, i := range []int{1, 2} {
		if got, want := e2eErrText(cmds[i].Err()), "ERR queue 'capped' is full (max_length 3)"; got != want {
			t.Fatalf("pipelined push %d: %q, want %q", i, got, want)
		}
	}
	// Popping makes room again.
	if err := c.LPop(ctx, "capped").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.RPush(ctx, "capped", "d").Result(); err != nil || got != 3 {
		t.Fatalf("RPUSH after a pop = %d, %v; want 3", got, err)
	}
}

func TestMaxLength_DuplicatesDoNotCount(t *testing.T) {
	e := e2eStart(t, controlRules)
	ctx := e2eCtx(t)
	c := e.Client(t, 2)
	if got, err := c.RPush(ctx, "capped_dedup", "a", "b").Result(); err != nil || got != 2 {
		t.Fatalf("RPUSH a b = %d, %v; want 2", got, err)
	}
	// Both are duplicates: nothing new, so the full queue accepts (acknowledges) them.
	if got, err := c.RPush(ctx, "capped_dedup", "a", "b").Result(); err != nil || got != 2 {
		t.Fatalf("RPUSH of duplicates on a full queue = %d, %v; want 2", got, err)
	}
	if got, want := e2eErrText(c.RPush(ctx, "capped_dedup", "a", "c").Err()), "ERR queue 'capped_dedup' is full (max_length 2)"; got != want {
		t.Fatalf("RPUSH a c: %q, want %q", got, want)
	}
	// The refused c left no dedup key: once there is room it is accepted.
	if err := c.LPop(ctx, "capped_dedup").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.RPush(ctx, "capped_dedup", "c").Result(); err != nil || got != 2 {
		t.Fatalf("RPUSH c after a pop = %d, %v; want 2", got, err)
	}
}

func TestOverflow_DropOldestCountsDrops(t *testing.T) {
	e := e2eStart(t, controlRules, httpOn)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	for i, v := range []string{"1", "2", "3", "4", "5"} {
		if got, err := c.RPush(ctx, "ring", v).Result(); err != nil || got != int64(min(i+1, 3)) {
			t.Fatalf("RPUSH %s = %d, %v; want %d", v, got, err, min(i+1, 3))
		}
	}
	if got, want := strings.Join(e.Direct.LRange(ctx, "ring", 0, -1).Val(), ","), "3,4,5"; got != want {
		t.Fatalf("ring after 5 RPUSHes: %s, want %s (the head, oldest, dropped)", got, want)
	}
	// LPUSH producers: their oldest items are at the tail.
	if got, err := c.LPush(ctx, "ring", "6", "7").Result(); err != nil || got != 3 {
		t.Fatalf("LPUSH 6 7 = %d, %v; want 3", got, err)
	}
	if got, want := strings.Join(e.Direct.LRange(ctx, "ring", 0, -1).Val(), ","), "7,6,3"; got != want {
		t.Fatalf("ring after LPUSH: %s, want %s (the tail dropped)", got, want)
	}
	st, err := c.Do(ctx, "QSTATS", "ring").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.(map[any]any)["dropped"], int64(4); got != want {
		t.Fatalf("QSTATS dropped = %v, want %d", got, want)
	}
	if got, want := metricValue(scrape(t, httpBase(t, e.Qgate)), "qgate_dropped_total", "queue", "ring"), 4.0; got != want {
		t.Fatalf("qgate_dropped_total{queue=ring} = %v, want %v", got, want)
	}
}

func TestQPush_DelayedIdenticalRawItemsBothArrive(t *testing.T) {
	e := e2eStart(t, controlRules)
	e2eProtos(t, func(t *testing.T, proto int) {
		ctx := e2eCtx(t)
		c := e.Client(t, proto)
		key := map[int]string{2: "d2", 3: "d3"}[proto]
		start := time.Now()
		if got, err := c.Do(ctx, "QPUSH", key, 300, "same", "same").Int64(); err != nil || got != 2 {
			t.Fatalf("QPUSH = %d, %v; want 2", got, err)
		}
		if got := e.Direct.LLen(ctx, key).Val(); got != 0 {
			t.Fatalf("LLEN right after QPUSH = %d, want 0 (not visible yet)", got)
		}
		for i := 0; i < 2; i++ {
			v, err := c.BLPop(ctx, 10*time.Second, key).Result()
			if err != nil || v[1] != "same" {
				t.Fatalf("BLPOP %d = %v, %v; want same", i, v, err)
			}
		}
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Fatalf("delayed items arrived after %s, before their 300ms delay", el)
		}
	})
}

func TestQPush_DelayZeroAndErrors(t *testing.T) {
	e := e2eStart(t, controlRules)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	if got, err := c.Do(ctx, "QPUSH", "now", 0, "a", "b").Int64(); err != nil || got != 2 {
		t.Fatalf("QPUSH delay 0 = %d, %v; want 2", got, err)
	}
	if got, want := strings.Join(e.Direct.LRange(ctx, "now", 0, -1).Val(), ","), "a,b"; got != want {
		t.Fatalf("ready list after QPUSH 0: %s, want %s", got, want)
	}
	want := "ERR QPUSH delay-ms must be an integer between 0 and 31536000000"
	for _, bad := range []string{"-1", "x", "1.5", "31536000001"} {
		if got := e2eErrText(c.Do(ctx, "QPUSH", "now", bad, "a").Err()); got != want {
			t.Fatalf("QPUSH delay %s: %q, want %q", bad, got, want)
		}
	}
	if got, want := e2eErrText(c.Do(ctx, "QPUSH", "now", "1").Err()), "ERR wrong number of arguments for 'qpush' command"; got != want {
		t.Fatalf("QPUSH without elements: %q, want %q", got, want)
	}
	// A full queue refuses delayed pushes too (delayed items count against max_length).
	if got, err := c.Do(ctx, "QPUSH", "capped", 60000, "a", "b", "c").Int64(); err != nil || got != 3 {
		t.Fatalf("QPUSH capped = %d, %v", got, err)
	}
	if got, want := e2eErrText(c.RPush(ctx, "capped", "d").Err()), "ERR queue 'capped' is full (max_length 3)"; got != want {
		t.Fatalf("RPUSH onto a queue full of delayed items: %q, want %q", got, want)
	}
}

func TestDelay_RuleDelaysPushesAndWakesBlockedPop(t *testing.T) {
	e := e2eStart(t, controlRules)
	ctx := e2eCtx(t)
	c, w := e.Client(t, 3), e.Client(t, 3)
	got := e2eBlpop(ctx, w, 1, true, 10*time.Second, "later")
	e2eWaitBlocked(t, c, 1)
	start := time.Now()
	// The reply is the ready list's length: the item is not in it yet.
	if n, err := c.RPush(ctx, "later", "x").Result(); err != nil || n != 0 {
		t.Fatalf("RPUSH on a delayed queue = %d, %v; want 0", n, err)
	}
	r := e2eRecv(t, "the blocked BLPOP", got)
	if r.err != nil || r.val[1] != "x" {
		t.Fatalf("BLPOP = %v, %v; want x", r.val, r.err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("item delivered after %s, before the rule's 300ms delay", el)
	}
}

func TestDelay_AtLeastOnceQueue(t *testing.T) {
	e := e2eStart(t, controlRules)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	if got, err := c.Do(ctx, "QPUSH", "jobs_alo", 100, `{"n":1}`).Int64(); err != nil || got != 1 {
		t.Fatalf("QPUSH = %d, %v", got, err)
	}
	v, err := c.BLPop(ctx, 10*time.Second, "jobs_alo").Result()
	if err != nil || v[1] != `{"n":1}` {
		t.Fatalf("BLPOP = %v, %v", v, err)
	}
	st := c.Do(ctx, "QSTATS", "jobs_alo").Val().(map[any]any)
	if st["in_flight"] != int64(1) || st["delayed"] != int64(0) {
		t.Fatalf("QSTATS after the pop %v: want in_flight 1, delayed 0", st)
	}
}

func TestPause_PopsSeeEmptyAndResumeWakesBlockedPop(t *testing.T) {
	e := e2eStart(t, controlRules, httpOn)
	ctx := e2eCtx(t)
	c, w := e.Client(t, 3), e.Client(t, 2)
	if got, err := c.Do(ctx, "QPAUSE", "work").Result(); err != nil || got != "OK" {
		t.Fatalf("QPAUSE = %v, %v", got, err)
	}
	if got, err := c.RPush(ctx, "work", "a").Result(); err != nil || got != 1 {
		t.Fatalf("RPUSH on a paused queue = %d, %v; want 1", got, err)
	}
	if err := c.LPop(ctx, "work").Err(); err != redis.Nil {
		t.Fatalf("LPOP on a paused queue: %v, want nil", err)
	}
	if got, _ := c.LPopCount(ctx, "work", 5).Result(); len(got) != 0 {
		t.Fatalf("LPOP COUNT on a paused queue: %v, want nil", got)
	}
	st := c.Do(ctx, "QSTATS", "work").Val().(map[any]any)
	if st["paused"] != int64(1) || st["ready"] != int64(1) {
		t.Fatalf("QSTATS %v: want paused 1, ready 1", st)
	}
	code, body := httpDo(t, "GET", httpBase(t, e.Qgate)+"/api/v1/queues/work", "", "", "")
	var qi struct {
		Paused bool `json:"paused"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &qi) != nil || !qi.Paused {
		t.Fatalf("GET /api/v1/queues/work: %d %s; want paused: true", code, body)
	}
	got := e2eBlpop(ctx, w, 1, true, 20*time.Second, "work")
	e2eWaitBlocked(t, c, 1)
	e2eNothing(t, "BLPOP on a paused queue", got)
	if n, err := c.Do(ctx, "QRESUME", "work").Int64(); err != nil || n != 1 {
		t.Fatalf("QRESUME = %d, %v; want 1", n, err)
	}
	r := e2eRecv(t, "the BLPOP woken by QRESUME", got)
	if r.err != nil || r.val[1] != "a" {
		t.Fatalf("BLPOP = %v, %v; want a", r.val, r.err)
	}
	if n, err := c.Do(ctx, "QRESUME", "work").Int64(); err != nil || n != 0 {
		t.Fatalf("QRESUME of a running queue = %d, %v; want 0", n, err)
	}
}

func TestPause_AtLeastOnceQueue(t *testing.T) {
	e := e2eStart(t, controlRules)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	if err := c.RPush(ctx, "jobs_alo", `{"n":1}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "QPAUSE", "jobs_alo").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.LPop(ctx, "jobs_alo").Err(); err != redis.Nil {
		t.Fatalf("LPOP on a paused at-least-once queue: %v, want nil", err)
	}
	if err := c.Do(ctx, "QRESUME", "jobs_alo").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.LPop(ctx, "jobs_alo").Result(); err != nil || v != `{"n":1}` {
		t.Fatalf("LPOP after QRESUME = %q, %v", v, err)
	}
}

// TestPause_SharedByTwoInstances: the pause lives in Redis; a BLPOP blocked on the other instance
// wakes on QRESUME through the list's keyspace event, well before its safety poll.
func TestPause_SharedByTwoInstances(t *testing.T) {
	r := proxytest.StartRedis(t)
	start := func() *proxytest.Qgate {
		cfg := proxy.DefaultConfig()
		cfg.Backend = r.URL()
		cfg.BlockingSafetyInterval = time.Hour // only the keyspace event can wake the pop in time
		controlRules(&cfg)
		return proxytest.StartQgate(t, cfg)
	}
	a, b := start(), start()
	ctx := e2eCtx(t)
	ca, cb, wb := a.Client(t), b.Client(t), b.Client(t)
	if err := ca.Do(ctx, "QPAUSE", "shared").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cb.RPush(ctx, "shared", "a").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cb.LPop(ctx, "shared").Err(); err != redis.Nil {
		t.Fatalf("LPOP on the other instance: %v, want nil (paused)", err)
	}
	got := e2eBlpop(ctx, wb, 1, true, 30*time.Second, "shared")
	e2eWaitBlocked(t, cb, 1)
	if err := ca.Do(ctx, "QRESUME", "shared").Err(); err != nil {
		t.Fatal(err)
	}
	res := e2eRecv(t, "the other instance's BLPOP woken by QRESUME", got)
	if res.err != nil || res.val[1] != "a" {
		t.Fatalf("BLPOP = %v, %v; want a", res.val, res.err)
	}
}

func TestControl_RightsWithoutAdmin(t *testing.T) {
	e := startAuth(t, func(c *proxy.Config) { controlRules(c) })
	ctx := e2eCtx(t)
	p := e.client(t, 3, "producer", pwProducer)
	for _, cmd := range []string{"QPAUSE", "QRESUME"} {
		want := "NOPERM user 'producer' has no 'admin' right on queue 'email_q'"
		if got := e2eErrText(p.Do(ctx, cmd, "email_q").Err()); got != want {
			t.Fatalf("%s by producer: %q, want %q", cmd, got, want)
		}
	}
	if got, err := p.Do(ctx, "QPUSH", "email_q", 0, "x").Int64(); err != nil || got != 1 {
		t.Fatalf("QPUSH by producer (push right) = %d, %v", got, err)
	}
	w := e.client(t, 3, "worker", pwWorker)
	if got, want := e2eErrText(w.Do(ctx, "QPUSH", "email_q", 0, "x").Err()), "NOPERM user 'worker' has no 'push' right on queue 'email_q'"; got != want {
		t.Fatalf("QPUSH by worker: %q, want %q", got, want)
	}
	adm := e.client(t, 3, "admin", pwAdmin)
	if err := adm.Do(ctx, "QPAUSE", "email_q").Err(); err != nil {
		t.Fatalf("QPAUSE by admin: %v", err)
	}
}
