package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestPubSub_PathologicalPatternDoesNotStall: with a client PSUBSCRIBEd to a pattern that takes a
// backtracking matcher minutes per channel (the CVE-2022-36021 shape), a PUBLISH on a 60-byte channel
// still gets its reply, with the right count, within a generous bound, and so does a PING from a
// third client sent while the PUBLISH is under way.
func TestPubSub_PathologicalPatternDoesNotStall(t *testing.T) {
	const bound = 5 * time.Second
	e := e2eStart(t)
	ctx := e2eCtx(t)
	pattern := "*a*a*a*a*a*a*a*a*a*a*a*b"
	ps := e.Client(t, 3).PSubscribe(ctx, pattern)
	defer ps.Close()
	e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "psubscribe", pattern, 1)

	publisher, pinger := e.Client(t, 3), e.Client(t, 2)
	for _, tc := range []struct {
		channel string
		want    int64
	}{
		{strings.Repeat("a", 60), 0},
		{strings.Repeat("a", 59) + "b", 1},
	} {
		type result struct {
			n   int64
			err error
		}
		published, ponged := make(chan result, 1), make(chan error, 1)
		go func() {
			n, err := publisher.Publish(ctx, tc.channel, "x").Result()
			published <- result{n, err}
		}()
		go func() { ponged <- pinger.Ping(ctx).Err() }()
		timeout := time.After(bound)
		for published != nil || ponged != nil {
			select {
			case r := <-published:
				if r.err != nil || r.n != tc.want {
					t.Fatalf("PUBLISH %s = %d, %v; want %d", tc.channel, r.n, r.err, tc.want)
				}
				published = nil
			case err := <-ponged:
				if err != nil {
					t.Fatalf("PING: %v", err)
				}
				ponged = nil
			case <-timeout:
				t.Fatalf("PUBLISH answered: %v, PING answered: %v; want both within %s", published == nil, ponged == nil, bound)
			}
		}
	}
	e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), pattern, strings.Repeat("a", 59)+"b", "x")
}
