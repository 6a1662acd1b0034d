package proxytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelSet is a master, its replicas and the Sentinels that monitor it as SentinelMaster
// (quorum 2 of 3), with short down-after-milliseconds and failover-timeout so a failover takes
// about a second.
type SentinelSet struct {
	Master    *Redis
	Replicas  []*Redis
	Sentinels []*Redis
}

// StartSentinelSet starts a master, replicas replicas of it (each in sync before it returns) and
// three Sentinels that know all of them; everything stops when the test ends.
func StartSentinelSet(tb testing.TB, replicas int) *SentinelSet {
	tb.Helper()
	s := &SentinelSet{}
	tb.Cleanup(s.Close)
	var err error
	if s.Master, err = LaunchRedis(tb.TempDir(), "--repl-diskless-sync-delay", "0"); err != nil {
		tb.Fatal(err)
	}
	for range replicas {
		r, err := LaunchRedis(tb.TempDir(), "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))
		if err != nil {
			tb.Fatal(err)
		}
		s.Replicas = append(s.Replicas, r)
	}
	for _, r := range s.Replicas {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr})
		err = waitFor(ReadyTimeout, func(ctx context.Context) error {
			info, err := rc.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !containsLine(info, "master_link_status:up") || !containsLine(info, "master_sync_in_progress:0") {
				return fmt.Errorf("replica %s not in sync yet", r.Addr)
			}
			return nil
		})
		_ = rc.Close()
		if err != nil {
			tb.Fatalf("start sentinel set: %v", err)
		}
	}
	for range 3 {
		dir := tb.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", SentinelMaster, s.Master.Port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
		sen, err := launch(dir, conf, readySentinel, false, []string{"--sentinel"})
		if err != nil {
			tb.Fatalf("start sentinel set: %v", err)
		}
		s.Sentinels = append(s.Sentinels, sen)
	}
	// Every Sentinel knows the replicas and the other Sentinels before a failover can be asked.
	for _, sen := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
		err := waitFor(3*ReadyTimeout, func(ctx context.Context) error {
			reps, err := c.Replicas(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if len(reps) < replicas {
				return fmt.Errorf("sentinel %s knows %d replicas, want %d", sen.Addr, len(reps), replicas)
			}
			others, err := c.Sentinels(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if len(others) < 2 {
				return fmt.Errorf("sentinel %s knows %d other sentinels, want 2", sen.Addr, len(others))
			}
			return nil
		})
		_ = c.Close()
		if err != nil {
			tb.Fatalf("start sentinel set: %v", err)
		}
	}
	return s
}

// URL is the redis+sentinel:// backend URL naming every Sentinel.
func (s *SentinelSet) URL() string {
	u := "redis+sentinel://"
	for i, sen := range s.Sentinels {
		if i > 0 {
			u += ","
		}
		u += sen.Addr
	}
	return u + "/" + SentinelMaster
}

// Failover asks a Sentinel for a failover (SENTINEL FAILOVER) and waits until every Sentinel reports
// newMaster, an address other than the old master's; it returns the new master's address.
func (s *SentinelSet) Failover(ctx context.Context) (newMaster string, err error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr})
	defer c.Close()
	if err := c.Failover(ctx, SentinelMaster).Err(); err != nil {
		return "", fmt.Errorf("sentinel failover: %w", err)
	}
	return s.WaitMaster(ctx, s.Master.Addr)
}

// WaitMaster waits until every Sentinel reports a master other than old, and returns it.
func (s *SentinelSet) WaitMaster(ctx context.Context, old string) (string, error) {
	var addr string
	for _, sen := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
		for {
			got, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
			if err == nil && len(got) == 2 {
				if a := net.JoinHostPort(got[0], got[1]); a != old {
					addr = a
					break
				}
			}
			if ctx.Err() != nil {
				_ = c.Close()
				return "", errors.New("wait for the new master: the sentinels still report the old one")
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = c.Close()
	}
	return addr, nil
}

// Node returns the server of the set at addr, or nil.
func (s *SentinelSet) Node(addr string) *Redis {
	for _, r := range append([]*Redis{s.Master}, s.Replicas...) {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// Close stops every server of the set.
func (s *SentinelSet) Close() {
	for _, r := range append(append([]*Redis{s.Master}, s.Replicas...), s.Sentinels...) {
		if r != nil {
			_ = r.Close()
		}
	}
}

func containsLine(text, line string) bool {
	for _, l := range splitLines(text) {
		if l == line {
			return true
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			l := s[start:i]
			if len(l) > 0 && l[len(l)-1] == '\r' {
				l = l[:len(l)-1]
			}
			out = append(out, l)
			start = i + 1
		}
	}
	return append(out, s[start:])
}
