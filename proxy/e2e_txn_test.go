package proxy_test

import (
	"context"
	"strings"
	"testing"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"
)

// MULTI/EXEC/DISCARD/WATCH (README "Transactions") and CLIENT REPLY, byte for byte against
// redis-server 7.0.

func TestTxn_QueueAndExec(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nRPUSH tq a b\r\nLPOP tq\r\nLLEN tq\r\nPING\r\nEXEC\r\n")
		expect(t, rd, "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n-ERR MULTI calls can not be nested\r\n"+
			"+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n:2\r\n$1\r\na\r\n:1\r\n+PONG\r\n")
		// DISCARD drops the queue; nothing ran.
		send(t, c, "MULTI\r\nRPUSH tq c\r\nDISCARD\r\nLLEN tq\r\n")
		expect(t, rd, "+OK\r\n+QUEUED\r\n+OK\r\n:1\r\n")
		// An empty transaction.
		send(t, c, "MULTI\r\nEXEC\r\n")
		expect(t, rd, "+OK\r\n*0\r\n")
	})
}

func TestTxn_QueueErrorsAbortExec(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "MULTI\r\nRPUSH tq a\r\nNOSUCH x\r\nLLEN\r\nEXEC\r\nLLEN tq\r\n")
		expect(t, rd, "+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"+
			"-ERR wrong number of arguments for 'llen' command\r\n"+
			"-EXECABORT Transaction discarded because of previous errors.\r\n:0\r\n")
		// A refused EXEC discards the transaction.
		send(t, c, "MULTI\r\nRPUSH tq a\r\nEXEC x\r\nEXEC\r\nLLEN tq\r\n")
		expect(t, rd, "+OK\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n"+
			"-ERR EXEC without MULTI\r\n:0\r\n")
		// Errors while running are elements of EXEC's reply, not an abort.
		send(t, c, "MULTI\r\nLPOP tq notanumber\r\nPING\r\nEXEC\r\n")
		expect(t, rd, "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-ERR value is out of range, must be positive\r\n+PONG\r\n")
	})
}

func TestTxn_BlockingInMultiDoesNotWait(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		for _, proto := range []string{"2", "3"} {
			c, rd := dialRaw(t, tg.addr)
			send(t, c, "HELLO "+proto+"\r\n")
			expectHello(t, rd, map[string]int{"2": 2, "3": 3}[proto], tg.version)
			nullArray := map[string]string{"2": "*-1\r\n", "3": "_\r\n"}[proto]
			nullBulk := map[string]string{"2": "$-1\r\n", "3": "_\r\n"}[proto]
			send(t, c, "MULTI\r\nBLPOP bq 0\r\nBRPOP bq 0\r\nBLMOVE bq bq2 LEFT LEFT 0\r\nBRPOPLPUSH bq bq2 0\r\nBLMPOP 0 1 bq LEFT\r\nRPUSH bq x\r\nBLPOP bq 0\r\nEXEC\r\n")
			expect(t, rd, "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*7\r\n"+
				nullArray+nullArray+nullBulk+nullBulk+nullArray+":1\r\n*2\r\n$2\r\nbq\r\n$1\r\nx\r\n")
		}
	})
}

func TestTxn_Watch(t *testing.T) {
	env := newRawEnv(t, nil)
	env.both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "MULTI\r\nWATCH k\r\nUNWATCH\r\nEXEC\r\n")
		expect(t, rd, "+OK\r\n-ERR WATCH inside MULTI is not allowed\r\n+QUEUED\r\n*1\r\n+OK\r\n")
	})
	// Outside MULTI qgate refuses WATCH (README "Transactions").
	c, rd := dialRaw(t, env.q.Addr)
	send(t, c, "WATCH k\r\nUNWATCH\r\n")
	expect(t, rd, "-ERR WATCH is not supported by qgate\r\n+OK\r\n")
}

func TestTxn_ResetDiscards(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "MULTI\r\nRPUSH tq a\r\nRESET\r\nEXEC\r\nLLEN tq\r\n")
		expect(t, rd, "+OK\r\n+QUEUED\r\n+RESET\r\n-ERR EXEC without MULTI\r\n:0\r\n")
	})
}

func TestTxn_GoRedisTxPipelined(t *testing.T) {
	env := e2eStart(t)
	e2eProtos(t, func(t *testing.T, proto int) {
		ctx := e2eCtx(t)
		c := env.Client(t, proto)
		key := "txq" + string(rune('0'+proto))
		var push *redis.IntCmd
		var pop *redis.StringCmd
		var n *redis.IntCmd
		cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			push = p.RPush(ctx, key, "a", "b", "c")
			pop = p.LPop(ctx, key)
			n = p.LLen(ctx, key)
			return nil
		})
		if err != nil {
			t.Fatalf("TxPipelined: %v", err)
		}
		if got, want := len(cmds), 3; got != want {
			t.Fatalf("commands = %d, want %d", got, want)
		}
		if got, want := push.Val(), int64(3); got != want {
			t.Fatalf("RPUSH = %d, want %d", got, want)
		}
		if got, want := pop.Val(), "a"; got != want {
			t.Fatalf("LPOP = %q, want %q", got, want)
		}
		if got, want := n.Val(), int64(2); got != want {
			t.Fatalf("LLEN = %d, want %d", got, want)
		}
		// A queue-time error: go-redis reports EXECABORT and nothing ran.
		_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.RPush(ctx, key, "z")
			p.Do(ctx, "nosuchcommand")
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "EXECABORT") && !strings.Contains(err.Error(), "unknown command") {
			t.Fatalf("TxPipelined with an unknown command: err = %v, want EXECABORT or unknown command", err)
		}
		if got, want := env.Direct.LLen(context.Background(), key).Val(), int64(2); got != want {
			t.Fatalf("LLEN after the aborted transaction = %d, want %d", got, want)
		}
	})
}

func TestClientReply_OffSkipOn(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "CLIENT REPLY FOO\r\nCLIENT REPLY\r\n")
		expect(t, rd, "-ERR syntax error\r\n-ERR wrong number of arguments for 'client|reply' command\r\n")
		// One pipeline: SKIP drops the next reply only; OFF drops replies and errors until ON.
		send(t, c, "CLIENT REPLY SKIP\r\nRPUSH rq a b c\r\nLLEN rq\r\nCLIENT REPLY OFF\r\nLPOP rq\r\nNOSUCH\r\nLLEN rq\r\n"+
			"CLIENT REPLY SKIP\r\nPING\r\nCLIENT REPLY ON\r\nLLEN rq\r\nCLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\nPING\r\n")
		expect(t, rd, ":3\r\n+OK\r\n:2\r\n+OK\r\n+PONG\r\n")
	})
}

func TestClientReply_PoppedItemsAreDelivered(t *testing.T) {
	env := e2eStart(t)
	ctx := e2eCtx(t)
	if err := env.Direct.RPush(ctx, "mq", "1", "2", "3", "4").Err(); err != nil {
		t.Fatal(err)
	}
	c, rd := dialRaw(t, env.Qgate.Addr)
	send(t, c, "CLIENT REPLY OFF\r\nLPOP mq\r\nLPOP mq 2\r\nCLIENT REPLY ON\r\nLLEN mq\r\n")
	expect(t, rd, "+OK\r\n:1\r\n")
	// A reply large enough to be handed over in parts (resp.SpillMin) is dropped whole.
	big := strings.Repeat("x", 200<<10)
	if err := env.Direct.RPush(ctx, "bigq", big, "small").Err(); err != nil {
		t.Fatal(err)
	}
	send(t, c, "PING\r\nCLIENT REPLY SKIP\r\nLPOP bigq\r\nLPOP bigq\r\n")
	expect(t, rd, "+PONG\r\n$5\r\nsmall\r\n")
	// The dropped replies' items are delivered: nothing comes back to the list.
	if got, want := env.Direct.LRange(ctx, "mq", 0, -1).Val(), []string{"4"}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("list = %q, want %q", got, want)
	}
	e2eEventually(t, "the transit record emptied", func() bool {
		for _, k := range env.Direct.Keys(ctx, "*transit:*").Val() {
			if env.Direct.HLen(ctx, k).Val() != 0 {
				return false
			}
		}
		return true
	})
}

// TestTxn_RedigoMulti sends MULTI … EXEC the redigo way (Send, then Do("EXEC")) to qgate and to the
// backend redis-server directly: the same values.
func TestTxn_RedigoMulti(t *testing.T) {
	env := e2eStart(t)
	for _, tc := range []struct {
		name string
		addr string
		key  string
	}{{"qgate", env.Qgate.Addr, "rgq"}, {"redis", env.Redis.Addr, "rgd"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := e2eRedigo(t, tc.addr)
			for _, cmd := range [][]any{{"MULTI"}, {"RPUSH", tc.key, "a", "b"}, {"LPOP", tc.key}, {"BLPOP", tc.key + "-empty", 0}, {"LLEN", tc.key}} {
				if err := c.Send(cmd[0].(string), cmd[1:]...); err != nil {
					t.Fatal(err)
				}
			}
			vals, err := redigo.Values(c.Do("EXEC"))
			if err != nil {
				t.Fatalf("EXEC: %v", err)
			}
			if got, want := len(vals), 4; got != want {
				t.Fatalf("EXEC replies = %d, want %d", got, want)
			}
			if got, want := vals[0], any(int64(2)); got != want {
				t.Errorf("RPUSH = %v, want %v", got, want)
			}
			if got, _ := redigo.String(vals[1], nil); got != "a" {
				t.Errorf("LPOP = %q, want %q", got, "a")
			}
			if got := vals[2]; got != nil {
				t.Errorf("BLPOP in MULTI = %v, want nil", got)
			}
			if got, want := vals[3], any(int64(1)); got != want {
				t.Errorf("LLEN = %v, want %v", got, want)
			}
		})
	}
}

func TestTxn_SubscribeInMulti(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "MULTI\r\nSUBSCRIBE tch\r\nEXEC\r\nPING\r\n")
		expect(t, rd, "+OK\r\n+QUEUED\r\n*1\r\n*3\r\n$9\r\nsubscribe\r\n$3\r\ntch\r\n:1\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")
	})
}

// TestClientReply_BlockedPopWithRepliesOff: a blocked pop whose reply is dropped still takes its
// item (as Redis does) and the item counts as delivered.
func TestClientReply_BlockedPopWithRepliesOff(t *testing.T) {
	env := e2eStart(t)
	ctx := e2eCtx(t)
	c, rd := dialRaw(t, env.Qgate.Addr)
	send(t, c, "CLIENT REPLY OFF\r\nBLPOP offq 0\r\n")
	q := env.Client(t, 3)
	e2eWaitBlocked(t, q, 1)
	if err := q.RPush(ctx, "offq", "v").Err(); err != nil {
		t.Fatal(err)
	}
	e2eWaitBlocked(t, q, 0)
	send(t, c, "CLIENT REPLY ON\r\nLLEN offq\r\n")
	expect(t, rd, "+OK\r\n:0\r\n")
	e2eEventually(t, "the transit record emptied", func() bool {
		return len(env.Direct.Keys(ctx, "*transit:*").Val()) == 0
	})
}
