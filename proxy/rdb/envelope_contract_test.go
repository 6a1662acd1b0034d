package rdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/rdb"
)

// The envelope layout contract (proxy/envelope's package doc) from the scripts' side: envelopes made
// by envelope.Append (what a push stores), by envelope.AppendEnvelope with any count, and the copies
// the scripts themselves rewrite go through an item's whole at-least-once life in a real
// redis-server (lease, nack, lease, expire, lease, die, redrive), and at each step the scripts must
// have read and written the right attempts count and left every other byte alone. If envelope.go
// changes the order or form of the members the scripts' pattern reads, the scripts handle envelopes
// as raw items (no count, never dead) and this fails.

// allowedQueueName uses every character policy.ValidateName allows in a queue name.
func allowedQueueName() string {
	var b strings.Builder
	for c := byte('!'); c < 0x7f; c++ {
		if !strings.ContainsRune(`"'\*?[]`, rune(c)) { // braces too: "{|}" is a hash tag
			b.WriteByte(c)
		}
	}
	return b.String()
}

// decoded decodes item and checks it is orig with attempts n (and no receipt).
func decoded(t *testing.T, step, item string, orig envelope.Envelope, n int) {
	t.Helper()
	e, ok := envelope.Decode([]byte(item))
	if !ok {
		t.Fatalf("%s: %s does not decode", step, item)
	}
	if e.Attempts != n {
		t.Fatalf("%s: attempts %d, want %d (%s)", step, e.Attempts, n, item)
	}
	if e.ID != orig.ID || e.Queue != orig.Queue || e.Producer != orig.Producer || !e.EnqueuedAt.Equal(orig.EnqueuedAt) ||
		!bytes.Equal(e.Payload, orig.Payload) || e.Receipt != "" {
		t.Fatalf("%s: decoded %+v, want %+v with attempts %d", step, e, orig, n)
	}
	if got := envelope.Payload(item); got != string(orig.Payload) {
		t.Fatalf("%s: Payload %q, want %q", step, got, orig.Payload)
	}
	want := orig
	want.Attempts = n
	if w := string(envelope.AppendEnvelope(nil, &want)); item != w {
		t.Fatalf("%s: the scripts wrote\n%s\nAppendEnvelope writes\n%s", step, item, w)
	}
}

func TestEnvelopeContract_ItemLife(t *testing.T) {
	ctx := context.Background()
	type pushed struct {
		name string
		item string // as stored by a push
	}
	var items []pushed
	for _, queue := range []string{"jobs", allowedQueueName()} {
		for _, producer := range []string{"default", `we"ird\user`, "ünï <&>"} {
			for _, payload := range []string{`{"a":[1,2]}`, `"attempts":7,`, "text \"q\"", "\xff\x00", ""} {
				items = append(items, pushed{"Append", string(envelope.Append(nil, queue, producer, []byte(payload)))})
			}
		}
		for _, attempts := range []int{1, 9, 99, 12345} {
			e := envelope.Envelope{ID: envelope.NewID(), Queue: queue, Producer: "p", Attempts: attempts, Payload: []byte("x")}
			items = append(items, pushed{"AppendEnvelope", string(envelope.AppendEnvelope(nil, &e))})
		}
	}

	c := fresh(t)
	for _, p := range items {
		orig, ok := envelope.Decode([]byte(p.item))
		if !ok {
			t.Fatalf("%s wrote %s, which does not decode", p.name, p.item)
		}
		queue := orig.Queue
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.RPush(ctx, queue, p.item).Err(); err != nil {
			t.Fatal(err)
		}
		// max_attempts is what the item has left + 3; backoff 0 (multiplier 1: see
		// TestContract_BackoffOverflow), so requeue_expired retries to the ready list at once.
		maxAttempts := orig.Attempts + 3
		retry := []any{maxAttempts, "1", 0, 0, "1", "0", "0", "nack", ""}

		leaseOne := func(step, prefix string, attempts int) string {
			t.Helper()
			res, err := rdb.LeasePop.Run(ctx, c, rdb.LeasePopKeys(queue), "LPOP", "", 60000, "o1", prefix).Slice()
			if err != nil || len(res) != 2 {
				t.Fatalf("%s: lease_pop = %v, %v", step, res, err)
			}
			got := res[1].([]any)
			receipt, item := got[0].(string), got[1].(string)
			decoded(t, step+": leased", item, orig, attempts)
			// The copy delivered to the client decodes to the same envelope, with the receipt.
			e, ok := envelope.Decode([]byte(envelope.WithReceipt(item, receipt)))
			if !ok || e.Receipt != receipt || e.Attempts != attempts {
				t.Fatalf("%s: delivered copy %+v ok=%v", step, e, ok)
			}
			return receipt
		}
		ready := func(step string) string {
			t.Helper()
			all, err := c.LRange(ctx, queue, 0, -1).Result()
			if err != nil || len(all) != 1 {
				t.Fatalf("%s: ready list %q, %v; want one item", step, all, err)
			}
			return all[0]
		}

		// 1. nack: attempts + 1, back to the ready list.
		r := leaseOne("first delivery", "A", orig.Attempts)
		if res, err := rdb.Nack.Run(ctx, c, rdb.RetryKeys(queue), append(retry, 0, r)...).Int64Slice(); err != nil || len(res) != 1 || res[0] != 1 {
			t.Fatalf("%s: nack = %v, %v; want [1]", p.item, res, err)
		}
		decoded(t, "after a nack", ready("after a nack"), orig, orig.Attempts+1)

		// 2. the lease expires: requeue_expired, attempts + 1.
		leaseOne("second delivery", "B", orig.Attempts+1)
		if err := c.ZAdd(ctx, rdb.InflightKey(queue), redis.Z{Score: 1, Member: "B.1"}).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := rdb.RequeueExpired.Run(ctx, c, rdb.RetryKeys(queue), append(with(retry, 8, "lease expired"), 10)...).Int64Slice()
		if err != nil || len(res) != 4 || res[0] != 1 || res[1] != 1 || res[2] != 0 {
			t.Fatalf("%s: requeue_expired = %v, %v; want [1 1 0 -1]", p.item, res, err)
		}
		decoded(t, "after an expiry", ready("after an expiry"), orig, orig.Attempts+2)

		// 3. the last attempt fails: a dead record holding the item with attempts = max_attempts.
		r = leaseOne("third delivery", "C", orig.Attempts+2)
		if res, err := rdb.Nack.Run(ctx, c, rdb.RetryKeys(queue), append(retry, 0, r)...).Int64Slice(); err != nil || len(res) != 1 || res[0] != 3 {
			t.Fatalf("%s: nack = %v, %v; want [3] (dead)", p.item, res, err)
		}
		rec := deadOf(t, c, queue)
		if rec.Attempts != maxAttempts || rec.Reason != "nack" {
			t.Fatalf("dead record %+v", rec)
		}
		decoded(t, "in the dead record", rec.Item, orig, maxAttempts)

		// 4. redrive: attempts 0, otherwise the item as it was pushed.
		if n, err := rdb.Redrive.Run(ctx, c, []string{queue, rdb.DeadKey(queue)}, 10).Int(); err != nil || n != 1 {
			t.Fatalf("redrive = %d, %v", n, err)
		}
		decoded(t, "after a redrive", ready("after a redrive"), orig, 0)
		if orig.Attempts == 0 && ready("") != p.item {
			t.Fatalf("redriven %s, pushed %s", ready(""), p.item)
		}
	}
}

// TestEnvelopeContract_DeliveredCopyPushedBack: a client that pushes its delivered copy (with the
// "receipt" member) back into the queue stores that receipt; the scripts still find the attempts
// counter (it comes before) and keep the stale receipt as it is.
func TestEnvelopeContract_DeliveredCopyPushedBack(t *testing.T) {
	ctx := context.Background()
	c := fresh(t)
	stored := string(envelope.Append(nil, q, "p", []byte(`{"a":1}`)))
	delivered := envelope.WithReceipt(stored, "OLD.1")
	lease(t, c, q, "o1", "r1", delivered, 1)
	if res, err := rdb.Nack.Run(ctx, c, rdb.RetryKeys(q), append(retryArgs(), 0, "r1")...).Int64Slice(); err != nil || len(res) != 1 || res[0] != 1 {
		t.Fatalf("nack = %v, %v; want [1]", res, err)
	}
	got := c.LIndex(ctx, q, 0).Val()
	e, ok := envelope.Decode([]byte(got))
	if !ok || e.Attempts != 1 || e.Receipt != "OLD.1" {
		t.Fatalf("after a nack %s decodes to %+v (ok=%v), want attempts 1 and the stale receipt kept", got, e, ok)
	}
}

func deadOf(t *testing.T, c *redis.Client, queue string) deadRecord {
	t.Helper()
	all, err := c.LRange(context.Background(), rdb.DeadKey(queue), 0, -1).Result()
	if err != nil || len(all) != 1 {
		t.Fatalf("dead list %q, %v; want one record", all, err)
	}
	var rec deadRecord
	if err := json.Unmarshal([]byte(all[0]), &rec); err != nil {
		t.Fatalf("dead record %s: %v", all[0], err)
	}
	return rec
}
