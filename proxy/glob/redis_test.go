package glob_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/glob"
	"github.com/qgate/qgate/proxy/proxytest"
)

// TestMatch_AgreesWithRedisServer asks a real redis-server which channels each pattern matches: one
// connection PSUBSCRIBEs every pattern, every channel is published once, and the pmessages say
// which (pattern, channel) pairs matched. The table of TestMatch_RedisRules and a few hundred random
// patterns and channels over Redis's special characters are checked this way, pair by pair, against
// Match and against the transcription of Redis's code that FuzzMatch relies on.
func TestMatch_AgreesWithRedisServer(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	word := func(max int) string {
		const alphabet = "ab*?[]^-\\\x80\xff"
		b := make([]byte, rnd.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		return string(b)
	}
	var patterns, channels []string
	for _, tc := range glob.Cases() {
		patterns = append(patterns, tc.Pattern)
		channels = append(channels, tc.S)
	}
	for range 400 {
		patterns = append(patterns, word(8))
	}
	for range 300 {
		channels = append(channels, word(6))
	}
	patterns, channels = dedup(patterns), dedup(channels)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb := proxytest.StartRedis(t).Client(t)
	ps := rdb.PSubscribe(ctx, patterns...)
	defer ps.Close()
	for range patterns {
		if _, err := ps.Receive(ctx); err != nil { // the subscription confirmations
			t.Fatal(err)
		}
	}
	pipe := rdb.Pipeline()
	counts := make([]*redis.IntCmd, len(channels))
	for i, ch := range channels {
		counts[i] = pipe.Publish(ctx, ch, "x")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range counts {
		total += int(c.Val())
	}
	type pair struct{ pattern, channel string }
	redisSays := map[pair]bool{}
	for range total {
		m, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		redisSays[pair{m.Pattern, m.Channel}] = true
	}
	if len(redisSays) == 0 {
		t.Fatal("redis-server matched nothing")
	}
	for _, p := range patterns {
		for _, ch := range channels {
			want := redisSays[pair{p, ch}]
			if got := glob.Match(p, ch); got != want {
				t.Errorf("Match(%q, %q) = %v, redis-server says %v", clip(p), clip(ch), got, want)
			}
			if len(p) <= 64 && len(ch) <= 64 {
				if got := glob.RedisMatch(p, ch); got != want {
					t.Errorf("RedisMatch(%q, %q) = %v, redis-server says %v", p, ch, got, want)
				}
			}
		}
	}
	for _, tc := range glob.Cases() { // and the table's expectations are Redis's
		if got, want := redisSays[pair{tc.Pattern, tc.S}], tc.Want; got != want {
			t.Errorf("redis-server matches %q against %q: %v; the table says %v", clip(tc.Pattern), clip(tc.S), got, want)
		}
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
