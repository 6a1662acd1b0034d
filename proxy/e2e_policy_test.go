package proxy_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

const emailSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["receiver", "content"],
  "properties": {"receiver": {"type": "string"}, "content": {"type": "string"}}
}`

// startWithRules starts Redis and qgate with the given rules (schemas written to a temp dir).
func startWithRules(t *testing.T, queues, channels []policy.Rule) (*proxytest.Qgate, *redis.Client) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "email.json"), []byte(emailSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Queues, cfg.Channels, cfg.Dir = queues, channels, dir
	return proxytest.StartQgate(t, cfg), r.Client(t)
}

// TestPolicy_EmailWorkerWithSchema is the mission's pattern with a schema: valid tasks reach a BLPOP
// worker as the exact bytes pushed, invalid ones are refused with the reason, and the raw Redis list
// holds envelopes.
func TestPolicy_EmailWorkerWithSchema(t *testing.T) {
	q, direct := startWithRules(t, []policy.Rule{{Match: "email_*", Schema: "email.json", MaxBytes: 1024}}, nil)
	ctx := context.Background()
	web := q.Client(t)
	tasks := []string{
		`{"receiver":"a@example.com","content":"welcome"}`,
		`{ "receiver" : "b@example.com", "content" : "spaces kept" }`,
		`{"receiver":"c@example.com","content":"ünïcode ✓"}`,
	}
	for _, task := range tasks {
		if err := web.RPush(ctx, "email_queue", task).Err(); err != nil {
			t.Fatalf("RPUSH %s: %v", task, err)
		}
	}
	for _, tc := range []struct{ value, want string }{
		{`{"content":"no receiver"}`, `ERR value 1 of 1 rejected by queues[0] "email_*": schema email.json: /receiver: missing property`},
		{`{"receiver": oops}`, `ERR value 1 of 1 rejected by queues[0] "email_*": not JSON at offset 13: invalid character 'o' looking for beginning of value`},
		{`{"receiver":"x","content":"` + strings.Repeat("x", 2000) + `"}`, `ERR value 1 of 1 rejected by queues[0] "email_*": value is 2029 bytes, queue limit 1024`},
	} {
		err := web.RPush(ctx, "email_queue", tc.value).Err()
		if err == nil || err.Error() != tc.want {
			t.Errorf("RPUSH %.40s: got %v, want %s", tc.value, err, tc.want)
		}
	}
	// All or nothing: one bad value refuses the whole variadic push.
	err := web.RPush(ctx, "email_queue", tasks[0], `{"receiver":1,"content":"x"}`).Err()
	if err == nil || !strings.HasPrefix(err.Error(), `ERR value 2 of 2 rejected by queues[0] "email_*": schema email.json: /receiver:`) {
		t.Fatalf("variadic push with a bad value: %v", err)
	}

	raw := direct.LRange(ctx, "email_queue", 0, -1).Val()
	if len(raw) != len(tasks) {
		t.Fatalf("backend holds %d items, want %d: a rejected value reached Redis", len(raw), len(tasks))
	}
	for i, item := range raw {
		e, ok := envelope.Decode([]byte(item))
		if !ok {
			t.Fatalf("backend item %d is not an envelope: %s", i, item)
		}
		if string(e.Payload) != tasks[i] || e.Queue != "email_queue" || e.Producer != "default" || e.Attempts != 0 {
			t.Fatalf("envelope %d = %+v", i, e)
		}
	}

	worker := q.Client(t)
	for i, want := range tasks {
		res, err := worker.BLPop(ctx, 5*time.Second, "email_queue").Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := res[1]; got != want {
			t.Fatalf("task %d: worker got %q, want the original bytes %q", i, got, want)
		}
		var task struct{ Receiver, Content string }
		if err := json.Unmarshal([]byte(res[1]), &task); err != nil || task.Receiver == "" {
			t.Fatalf("task %d does not decode: %v", i, err)
		}
	}
}

func TestPolicy_LegacyItemsAndEnvelopeOff(t *testing.T) {
	no := false
	q, direct := startWithRules(t, []policy.Rule{{Match: "legacy_*", Envelope: &no}}, nil)
	ctx := context.Background()
	c := q.Client(t)
	// Pushed straight into Redis by an old producer: delivered as it is.
	direct.RPush(ctx, "jobs", `{"qgate":1,"id":"not really"}`, "plain")
	if got := c.LPop(ctx, "jobs").Val(); got != `{"qgate":1,"id":"not really"}` {
		t.Fatalf("legacy item delivered as %q", got)
	}
	if got := c.LPop(ctx, "jobs").Val(); got != "plain" {
		t.Fatalf("legacy item delivered as %q", got)
	}
	// envelope: false stores the bytes themselves.
	c.RPush(ctx, "legacy_q", "raw value")
	if got := direct.LPop(ctx, "legacy_q").Val(); got != "raw value" {
		t.Fatalf("backend holds %q, want the raw value", got)
	}
}

func TestPolicy_BinaryAndEmptyRoundTrip(t *testing.T) {
	q, direct := startWithRules(t, nil, nil)
	ctx := context.Background()
	c := q.Client(t)
	values := []string{"", "\x00\xff\xfe binary", strings.Repeat("\xe2\x82", 300000), `"json string"`}
	for _, v := range values {
		c.RPush(ctx, "bin", v)
	}
	if n := direct.LLen(ctx, "bin").Val(); n != int64(len(values)) {
		t.Fatalf("backend holds %d", n)
	}
	for i, want := range values {
		if got := c.LPop(ctx, "bin").Val(); got != want {
			t.Fatalf("value %d: got %.40q (%d bytes), want %.40q (%d bytes)", i, got, len(got), want, len(want))
		}
	}
}

func TestPolicy_DeliverEnvelopeAndQDelivery(t *testing.T) {
	q, _ := startWithRules(t, []policy.Rule{{Match: "audit_*", Deliver: "envelope"}}, nil)
	ctx := context.Background()
	c := q.Client(t, func(o *redis.Options) { o.PoolSize = 1 }) // one connection: QDELIVERY is per connection
	c.RPush(ctx, "audit_log", "entry-1", "entry-2", "entry-3")
	e, ok := envelope.Decode([]byte(c.LPop(ctx, "audit_log").Val()))
	if !ok || string(e.Payload) != "entry-1" || len(e.ID) != 26 {
		t.Fatalf("deliver: envelope gave %+v ok=%v", e, ok)
	}
	if got := c.Do(ctx, "qdelivery").Val(); got != "default" {
		t.Fatalf("QDELIVERY = %v, want default", got)
	}
	if err := c.Do(ctx, "qdelivery", "payload").Err(); err != nil {
		t.Fatal(err)
	}
	if got := c.LPop(ctx, "audit_log").Val(); got != "entry-2" {
		t.Fatalf("after QDELIVERY payload got %q", got)
	}
	if err := c.Do(ctx, "qdelivery", "sometimes").Err(); err == nil || err.Error() != "ERR QDELIVERY mode must be payload, envelope or default" {
		t.Fatalf("bad mode: %v", err)
	}
	c.Do(ctx, "qdelivery", "envelope")
	c.RPush(ctx, "plain_q", "p")
	if _, ok := envelope.Decode([]byte(c.LPop(ctx, "plain_q").Val())); !ok {
		t.Fatal("QDELIVERY envelope must apply to every queue")
	}
}

func TestPolicy_Dedup(t *testing.T) {
	q, direct := startWithRules(t, []policy.Rule{
		{Match: "orders", Format: "json", Dedup: policy.Dedup{Key: "/order_id", Window: time.Minute}},
		{Match: "pings", Dedup: policy.Dedup{Key: "body", Window: time.Minute}},
	}, nil)
	ctx := context.Background()
	c := q.Client(t)
	for i, tc := range []struct {
		value string
		want  int64
	}{
		{`{"order_id":1,"n":"first"}`, 1},
		{`{"order_id":1,"n":"retry"}`, 1}, // same order id: acknowledged, not enqueued
		{`{"order_id":2}`, 2},
	} {
		if got, err := c.RPush(ctx, "orders", tc.value).Result(); err != nil || got != tc.want {
			t.Fatalf("push %d: %d, %v; want %d", i, got, err, tc.want)
		}
	}
	if err := c.RPush(ctx, "orders", `{"n":3}`).Err(); err == nil || !strings.Contains(err.Error(), "dedup key /order_id: missing") {
		t.Fatalf("missing dedup key: %v", err)
	}
	if got, _ := c.RPush(ctx, "pings", "a", "a", "b").Result(); got != 2 {
		t.Fatalf("variadic body dedup: list length %d, want 2", got)
	}
	// A second qgate on the same Redis sees the same dedup keys (they live in Redis, in the queue's slot).
	if keys := direct.Keys(ctx, "{orders}:qgate:dedup:*").Val(); len(keys) != 2 {
		t.Fatalf("dedup keys %v", keys)
	}
	if ttl := direct.PTTL(ctx, direct.Keys(ctx, "{orders}:qgate:dedup:*").Val()[0]).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("dedup key TTL %s, want within the 1m window", ttl)
	}
	// After SCRIPT FLUSH the script is reloaded transparently.
	direct.ScriptFlush(ctx)
	if got, err := c.RPush(ctx, "orders", `{"order_id":3}`).Result(); err != nil || got != 3 {
		t.Fatalf("after SCRIPT FLUSH: %d, %v", got, err)
	}
}

func TestPolicy_PubSubFollowsChannelRules(t *testing.T) {
	q, direct := startWithRules(t, nil, []policy.Rule{{Match: "events.*", Format: "json", MaxBytes: 64}})
	ctx := context.Background()
	sub := q.Client(t).Subscribe(ctx, "events.signup")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	raw := direct.Subscribe(ctx, "events.signup")
	defer raw.Close()
	if _, err := raw.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	pub := q.Client(t)
	if err := pub.Publish(ctx, "events.signup", "not json").Err(); err == nil || !strings.Contains(err.Error(), `rejected by channels[0] "events.*": not JSON at offset 1`) {
		t.Fatalf("bad message: %v", err)
	}
	if err := pub.Publish(ctx, "events.signup", `{"user":7}`).Err(); err != nil {
		t.Fatal(err)
	}
	m, err := sub.ReceiveMessage(ctx)
	if err != nil || m.Payload != `{"user":7}` {
		t.Fatalf("qgate subscriber got %+v, %v", m, err)
	}
	rm, err := raw.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := envelope.Decode([]byte(rm.Payload)); !ok || string(e.Payload) != `{"user":7}` {
		t.Fatalf("a subscriber on Redis itself sees the envelope; got %q", rm.Payload)
	}
}

func TestPolicy_InvalidNames(t *testing.T) {
	q, _ := startWithRules(t, nil, nil)
	ctx := context.Background()
	c := q.Client(t)
	for _, tc := range []struct {
		args []interface{}
		want string
	}{
		{[]interface{}{"rpush", "a{}q", "x"}, `ERR invalid queue name "a{}q": a '}' must close a non-empty {hash tag}, as in jobs{t}`},
		{[]interface{}{"lpop", "a b"}, `ERR invalid queue name "a b"`},
		{[]interface{}{"blpop", "ok", "bad*", "1"}, `ERR invalid queue name "bad*"`},
		{[]interface{}{"publish", "", "x"}, `ERR invalid channel name: use 1 to 200 characters`},
	} {
		err := c.Do(ctx, tc.args...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %s", tc.args, err, tc.want)
		}
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("connection unusable after errors: %v", err)
	}
}
