package rdb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// slotVectors are CLUSTER KEYSLOT answers of redis-server 7.0.15 started with --cluster-enabled yes
// (recorded with redis-cli; TestSlot_MatchesClusterKeyslot asks a live server again). The keys are
// the examples of the Redis Cluster specification ("Hash tags": {user1000}.following,
// foo{}{bar}, foo{{bar}}zap, foo{bar}{zap}) and the edge cases of its hash tag rule: an empty tag
// hashes the whole key, only the first '{' and the first '}' after it count, a '}' before the first
// '{' does not close anything.
var slotVectors = []struct {
	key  string
	slot uint16
}{
	// CRC16/XMODEM check value: crc16("123456789") = 0x31C3 (Redis src/crc16.c; below 16384, so it
	// is also the slot).
	{"123456789", 0x31C3},
	{"foo", 12182},
	{"bar", 5061},
	{"hello", 866},
	{"", 0},
	{"{user1000}.following", 3443}, // the spec: both keys hash "user1000", same slot
	{"{user1000}.followers", 3443},
	{"foo{}{bar}", 8363},    // empty first tag: the whole key is hashed
	{"foo{{bar}}zap", 4015}, // the tag is "{bar"
	{"foo{bar}{zap}", 5061}, // only the first tag counts: "bar"
	{"foo{bar}", 5061},
	{"{}foo", 9500},     // empty tag: whole key
	{"{}", 15257},       // empty tag: whole key
	{"a{b", 13340},      // no closing brace: whole key
	{"{", 4092},         // whole key
	{"}", 12090},        // whole key
	{"{{}}", 4092},      // the tag is "{", like the key "{"
	{"a}b{c", 13587},    // '}' before '{' closes nothing, and "{c" has no '}': whole key
	{"{a}", 15495},      // tag "a"
	{"}{a}", 15495},     // tag "a"
	{"{{", 7007},        // whole key
	{"a{b}c{d}e", 3300}, // tag "b"
	{"x\xffy", 7656},    // bytes, not runes
	{"q", 11958},        // a queue's ready list and its other keys share a slot
	{"{q}:qgate:inflight", 11958},
	{rdb.LeasedQueuesKey, 3860},
	{rdb.InstancesKey, 12994},
}

func TestSlot_Vectors(t *testing.T) {
	for _, v := range slotVectors {
		if got := rdb.Slot(v.key); got != v.slot {
			t.Errorf("Slot(%q) = %d, want %d (CLUSTER KEYSLOT)", v.key, got, v.slot)
		}
	}
}

// TestSlot_QueueKeysShareSlot: every key rdb builds for a queue is in the ready list's slot, which is
// what makes the scripts Cluster-safe.
func TestSlot_QueueKeysShareSlot(t *testing.T) {
	for _, q := range []string{"q", "email_queue", "a.b-c_d:e", "123456789"} {
		want := rdb.Slot(q)
		keys := append(rdb.RetryKeys(q), rdb.LeasePopKeys(q)...)
		keys = append(keys, rdb.TransitKeys(q, "inst-1")...)
		keys = append(keys, rdb.HandoffBackKeys(q)...)
		keys = append(keys, rdb.DedupKey(q, "abc"))
		for _, k := range keys {
			if got := rdb.Slot(k); got != want {
				t.Errorf("queue %q: key %q is in slot %d, the queue in %d", q, k, got, want)
			}
		}
	}
}

// TestSlot_MatchesClusterKeyslot asks a live cluster-enabled redis-server for the slot of the vectors
// and of random keys (with and without braces) and compares.
func TestSlot_MatchesClusterKeyslot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a redis-server")
	}
	bus, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r := proxytest.StartRedis(t, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus))
	c := r.Client(t)
	ctx := context.Background()

	keys := make([]string, 0, len(slotVectors)+2000)
	for _, v := range slotVectors {
		keys = append(keys, v.key)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab{}{}x\x00\xff"
	for range 2000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		keys = append(keys, string(b))
	}
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ClusterKeySlot(ctx, k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if got, want := rdb.Slot(k), cmds[i].Val(); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT = %d", k, got, want)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// refSlot is the Redis Cluster specification's algorithm written out plainly: bitwise CRC16/XMODEM
// (polynomial 0x1021, initial value 0, no reflection, no final xor) of the key, or of the bytes
// between the first '{' and the first '}' after it when there are any.
func refSlot(key string) uint16 {
	s := -1
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			s = i
			break
		}
	}
	if s >= 0 {
		for e := s + 1; e < len(key); e++ {
			if key[e] == '}' {
				if e != s+1 {
					key = key[s+1 : e]
				}
				break
			}
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 0x3FFF
}

func TestRefSlot_Vectors(t *testing.T) {
	for _, v := range slotVectors {
		if got := refSlot(v.key); got != v.slot {
			t.Errorf("refSlot(%q) = %d, want %d", v.key, got, v.slot)
		}
	}
}

func FuzzSlot(f *testing.F) {
	for _, v := range slotVectors {
		f.Add(v.key)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if got, want := rdb.Slot(key), refSlot(key); got != want {
			t.Fatalf("Slot(%q) = %d, reference %d", key, got, want)
		}
	})
}
