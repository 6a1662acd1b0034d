package queue

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// The queue registry (rdb.QueuesKey) and the engine calls of the HTTP API: listing and sampling
// queues, purging dead letters.

// zaddQueues notes queues in the registry; it returns the registry's size.
func (e *Engine) zaddQueues(ctx context.Context, zs []redis.Z) (int64, error) {
	pipe := e.client.Pipeline()
	pipe.ZAdd(ctx, rdb.QueuesKey, zs...)
	card := pipe.ZCard(ctx, rdb.QueuesKey)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("note queues: %w", err)
	}
	return card.Val(), nil
}

// TrimRegistry drops the registry's entries idle for rdb.QueueIdleTTL and its least recently noted
// past rdb.QueuesMax; it returns the registry's size.
func (e *Engine) TrimRegistry(ctx context.Context) (int64, error) {
	cutoff := time.Now().Add(-rdb.QueueIdleTTL).UnixMilli()
	pipe := e.client.Pipeline()
	pipe.ZRemRangeByScore(ctx, rdb.QueuesKey, "-inf", "("+strconv.FormatInt(cutoff, 10))
	pipe.ZRemRangeByRank(ctx, rdb.QueuesKey, 0, -rdb.QueuesMax-1)
	card := pipe.ZCard(ctx, rdb.QueuesKey)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("trim queue registry: %w", err)
	}
	return card.Val(), nil
}

// KnownQueues returns the registry's queues (every instance's), by name, with when one last noted
// each (or its first lease from the leased-queues registry, which older instances write alone).
func (e *Engine) KnownQueues(ctx context.Context) (map[string]time.Time, error) {
	pipe := e.client.Pipeline()
	reg := pipe.ZRangeWithScores(ctx, rdb.QueuesKey, 0, -1)
	leased := pipe.ZRangeWithScores(ctx, rdb.LeasedQueuesKey, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	out := make(map[string]time.Time, len(reg.Val()))
	for _, zs := range [][]redis.Z{leased.Val(), reg.Val()} {
		for _, z := range zs {
			if q, ok := z.Member.(string); ok {
				if t := time.UnixMilli(int64(z.Score)); t.After(out[q]) {
					out[q] = t
				}
			}
		}
	}
	return out, nil
}

// SortedQueues returns the names of KnownQueues in order.
func SortedQueues(known map[string]time.Time) []string {
	out := make([]string, 0, len(known))
	for q := range known {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// sampleChunk bounds the queues one pipeline of SampleQueues counts.
const sampleChunk = 1000

// SampleQueues counts the ready, in-flight, delayed and dead items of queues, sampleChunk queues per
// pipeline (a queue that fails to count is left out).
func (e *Engine) SampleQueues(ctx context.Context, queues []string) (map[string]QueueStats, error) {
	out := make(map[string]QueueStats, len(queues))
	for start := 0; start < len(queues); start += sampleChunk {
		chunk := queues[start:min(start+sampleChunk, len(queues))]
		pipe := e.client.Pipeline()
		cmds := make([][4]*redis.IntCmd, len(chunk))
		for i, q := range chunk {
			cmds[i] = [4]*redis.IntCmd{pipe.LLen(ctx, q), pipe.ZCard(ctx, rdb.InflightKey(q)),
				pipe.ZCard(ctx, rdb.DelayedKey(q)), pipe.LLen(ctx, rdb.DeadKey(q))}
		}
		_, err := pipe.Exec(ctx)
		if err != nil && ctx.Err() != nil {
			return out, err
		}
		for i, q := range chunk {
			c := cmds[i]
			if c[0].Err() != nil || c[1].Err() != nil || c[2].Err() != nil || c[3].Err() != nil {
				continue // e.g. WRONGTYPE: a key of that name that is no list
			}
			out[q] = QueueStats{Ready: c[0].Val(), InFlight: c[1].Val(), Delayed: c[2].Val(), Dead: c[3].Val(), OldestReadyAgeMs: -1}
		}
	}
	return out, nil
}

// PurgeDead deletes a queue's dead letters; it returns how many there were.
func (e *Engine) PurgeDead(ctx context.Context, queue string) (int64, error) {
	var n *redis.IntCmd
	_, err := e.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.LLen(ctx, rdb.DeadKey(queue))
		p.Del(ctx, rdb.DeadKey(queue))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	return n.Val(), nil
}

// Ping asks the backend for PONG.
func (e *Engine) Ping(ctx context.Context) error { return e.client.Ping(ctx).Err() }
