package commands_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

func TestKey_DelExistsType(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: rawRules})
		c, _, _ := protoConn(t, s, proto)
		if err := s.Client.Set(context.Background(), "rawstr", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		run(t, c, cases{
			{[]string{"RPUSH", "rawq", "a"}, ":1\r\n"},
			{[]string{"TYPE", "rawq"}, "+list\r\n"},
			{[]string{"TYPE", "rawstr"}, "+string\r\n"},
			{[]string{"TYPE", "nokey"}, "+none\r\n"},
			{[]string{"EXISTS", "rawq", "rawq", "nokey", "rawstr"}, ":3\r\n"},
			{[]string{"DEL", "rawq", "rawq", "nokey"}, ":1\r\n"},
			{[]string{"UNLINK", "rawstr", "nokey"}, ":1\r\n"},
			{[]string{"EXISTS", "rawq", "rawstr"}, ":0\r\n"},
			{[]string{"DEL"}, errR("ERR wrong number of arguments for 'del' command")},
			{[]string{"UNLINK"}, errR("ERR wrong number of arguments for 'unlink' command")},
			{[]string{"EXISTS"}, errR("ERR wrong number of arguments for 'exists' command")},
			{[]string{"TYPE"}, errR("ERR wrong number of arguments for 'type' command")},
			{[]string{"TYPE", "a", "b"}, errR("ERR wrong number of arguments for 'type' command")},
			{[]string{"DEL", "ok", "a b"}, errR("ERR invalid queue name \"a b\": use printable ASCII without spaces, quotes, backslashes or * ? [ ]")},
		})
	}
}

// DEL of an at-least-once queue deletes its ready list only, as Redis deletes the key; QPURGE
// deletes everything qgate keeps for it and counts the items.
func TestPurge_EveryKeyOfTheQueue(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: append([]policy.Rule{{Match: "rawalo*", Delivery: "at-least-once", Envelope: new(bool)}}, rawRules...)})
	c := s.Conn(t)
	ctx := context.Background()
	setup := func(q string) {
		t.Helper()
		for _, cmd := range [][]any{
			{"RPUSH", q, "a", "b", "c"},
			{"ZADD", rdb.DelayedKey(q), 1, "d"},
			{"RPUSH", rdb.DeadKey(q), "e"},
			{"HSET", rdb.TransitKey(q, "other"), "L1.0", "f"},
			{"SADD", rdb.TransitOwnersKey(q), "other"},
			{"ZADD", rdb.QueuesKey, 1, q},
		} {
			if err := s.Client.Do(ctx, cmd...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	setup("rawalo")
	setup("rawalo2")
	run(t, c, cases{
		{[]string{"LPOP", "rawalo"}, bulk("a")}, // leased: one item in the leases
		{[]string{"DEL", "rawalo"}, ":1\r\n"},
		{[]string{"EXISTS", "rawalo"}, ":0\r\n"},
	})
	// The pop notes rawalo in the queue registry from a background writer: wait for that note, or it
	// could land after QPURGE removed the entry.
	deadline := time.Now().Add(10 * time.Second)
	for s.Client.ZScore(ctx, rdb.QueuesKey, "rawalo").Val() <= 1 {
		if time.Now().After(deadline) {
			t.Fatal("the pop's registry note never landed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Leased 1, delayed 1, dead 1, in transit 1: the ready list went with DEL.
	run(t, c, cases{
		{[]string{"QPURGE", "rawalo", "rawalo2"}, ":10\r\n"},
		{[]string{"QPURGE", "rawalo"}, ":0\r\n"},
	})
	keys, err := s.Client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case rdb.InstancesKey, rdb.LeasedQueuesKey:
		case rdb.QueuesKey:
			if n := s.Client.ZCard(ctx, k).Val(); n != 0 {
				t.Errorf("%s still has %d entries", k, n)
			}
		default:
			t.Errorf("key %q left after QPURGE", k)
		}
	}
	if n, err := s.Client.ZScore(ctx, rdb.LeasedQueuesKey, "rawalo").Result(); err == nil {
		t.Errorf("rawalo still in %s (score %v)", rdb.LeasedQueuesKey, n)
	}
}
