package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
)

// CLIENT UNBLOCK (README "Commands"), byte for byte against redis-server 7.0.

// rawClientID returns the connection's CLIENT ID.
func rawClientID(t *testing.T, rd *rawReader) string {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	line, err := rd.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("CLIENT ID: got %q, %v", line, err)
	}
	return strings.TrimSpace(line[1:])
}

// unblockWhenBlocked sends CLIENT UNBLOCK id mode until it replies :1 (the client is blocked by then).
func unblockWhenBlocked(t *testing.T, addr, id, mode string) {
	t.Helper()
	c, rd := dialRaw(t, addr)
	deadline := time.Now().Add(rawTimeout)
	for {
		send(t, c, "CLIENT UNBLOCK "+id+" "+mode+"\r\n")
		_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
		line, err := rd.br.ReadString('\n')
		if err != nil {
			t.Fatalf("CLIENT UNBLOCK: %v", err)
		}
		if line == ":1\r\n" {
			return
		}
		if line != ":0\r\n" || time.Now().After(deadline) {
			t.Fatalf("CLIENT UNBLOCK: got %q, the client never blocked", line)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientUnblock_EachBlockingCommand(t *testing.T) {
	cmds := map[string]string{
		"BLPOP":      "BLPOP uq1 uq2 0",
		"BRPOP":      "BRPOP uq1 0",
		"BLMOVE":     "BLMOVE uq1 uq2 LEFT RIGHT 0",
		"BRPOPLPUSH": "BRPOPLPUSH uq1 uq2 0",
		"BLMPOP":     "BLMPOP 0 2 uq1 uq2 LEFT COUNT 3",
	}
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		for name, cmd := range cmds {
			for _, proto := range []int{2, 3} {
				for _, mode := range []string{"TIMEOUT", "ERROR"} {
					t.Run(fmt.Sprintf("%s/RESP%d/%s", name, proto, mode), func(t *testing.T) {
						c, rd := dialRaw(t, tg.addr)
						send(t, c, "HELLO "+strconv.Itoa(proto)+"\r\n")
						expectHello(t, rd, proto, tg.version)
						send(t, c, "CLIENT ID\r\n")
						id := rawClientID(t, rd)
						send(t, c, cmd+"\r\n")
						unblockWhenBlocked(t, tg.addr, id, mode)
						want := "*-1\r\n"
						if proto == 3 {
							want = "_\r\n"
						}
						if mode == "ERROR" {
							want = "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
						}
						expect(t, rd, want)
						expectAlive(t, c, rd)
					})
				}
			}
		}
	})
}

func TestClientUnblock_Errors(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "CLIENT ID\r\n")
		id := rawClientID(t, rd)
		send(t, c, "CLIENT UNBLOCK x\r\nCLIENT UNBLOCK x FOO\r\nCLIENT UNBLOCK 1 timeout extra\r\nCLIENT UNBLOCK 99999 error\r\nCLIENT UNBLOCK -1\r\nCLIENT UNBLOCK "+id+"\r\nCLIENT UNBLOCK\r\n")
		expect(t, rd, "-ERR value is not an integer or out of range\r\n-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"+
			"-ERR unknown subcommand or wrong number of arguments for 'UNBLOCK'. Try CLIENT HELP.\r\n:0\r\n:0\r\n:0\r\n"+
			"-ERR wrong number of arguments for 'client|unblock' command\r\n")
	})
}

// TestClientUnblock_RaceWithPush unblocks a waiting BLPOP while an item is pushed at the same moment,
// many times: every item is either delivered to the client or still in the list.
// The queues alo* are at-least-once (the item is leased for the client), the others at-most-once.
func TestClientUnblock_RaceWithPush(t *testing.T) {
	env := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "alo*", Delivery: "at-least-once", VisibilityTimeout: time.Hour}}
	})
	for _, prefix := range []string{"race", "alo"} {
		t.Run(prefix, func(t *testing.T) { raceUnblockWithPush(t, env, prefix) })
	}
}

func raceUnblockWithPush(t *testing.T, env *e2eEnv, prefix string) {
	e2eProtos(t, func(t *testing.T, proto int) {
		ctx := e2eCtx(t)
		c := env.Client(t, proto)
		admin := env.Client(t, proto)
		key := prefix + strconv.Itoa(proto)
		cn := c.Conn()
		t.Cleanup(func() { _ = cn.Close() })
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		delivered, unblocked := 0, 0
		const rounds = 60
		for i := 0; i < rounds; i++ {
			item := "item-" + strconv.Itoa(i)
			mode := []string{"TIMEOUT", "ERROR"}[i%2]
			type res struct {
				v   []string
				err error
			}
			done := make(chan res, 1)
			go func() {
				v, err := cn.BLPop(ctx, 0, key).Result()
				done <- res{v, err}
			}()
			e2eEventually(t, "the client blocked", func() bool {
				for _, ci := range strings.Split(admin.ClientList(ctx).Val(), "\n") {
					if strings.HasPrefix(ci, "id="+strconv.FormatInt(id, 10)+" ") && strings.Contains(ci, "flags=b") {
						return true
					}
				}
				return false
			})
			pushed := make(chan error, 1)
			go func() { pushed <- env.Direct.RPush(ctx, key, item).Err() }()
			n, err := admin.Do(ctx, "CLIENT", "UNBLOCK", id, mode).Int()
			if err != nil {
				t.Fatalf("CLIENT UNBLOCK: %v", err)
			}
			if err := <-pushed; err != nil {
				t.Fatal(err)
			}
			r := <-done
			switch {
			case r.err == nil:
				if got, want := r.v, []string{key, item}; len(got) != 2 || got[0] != want[0] || !strings.Contains(got[1], item) {
					t.Fatalf("BLPOP = %q, want %q", got, want)
				}
				delivered++
				if got := env.Direct.LLen(ctx, key).Val(); got != 0 {
					t.Fatalf("round %d: the delivered item is also in the list (LLEN %d)", i, got)
				}
			case errors.Is(r.err, redis.Nil) && mode == "TIMEOUT" && n == 1,
				r.err != nil && strings.Contains(r.err.Error(), "UNBLOCKED") && mode == "ERROR" && n == 1:
				unblocked++
				// Not delivered: the item is in the list (a take in flight gives it back).
				e2eEventually(t, "the item back in the list", func() bool {
					v := env.Direct.LRange(ctx, key, 0, -1).Val()
					return len(v) == 1 && v[0] == item
				})
			default:
				t.Fatalf("round %d: BLPOP err = %v after CLIENT UNBLOCK %s replied %d", i, r.err, mode, n)
			}
			// Start the next round from an empty list.
			if err := env.Direct.Del(context.Background(), key).Err(); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("RESP%d: %d delivered, %d unblocked without an item", proto, delivered, unblocked)
	})
}

// TestClientUnblock_Rights: with users configured a client unblocks its own user's connections; the
// admin of every queue unblocks any; another user's connection answers :0 and stays blocked.
func TestClientUnblock_Rights(t *testing.T) {
	env := startAuth(t)
	ctx := e2eCtx(t)
	worker := env.client(t, 2, "worker", pwWorker)
	cn := worker.Conn()
	t.Cleanup(func() { _ = cn.Close() })
	id, err := cn.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	block := func() <-chan error {
		done := make(chan error, 1)
		go func() { done <- cn.BLPop(ctx, 0, "email_rights").Err() }()
		return done
	}
	admin := env.client(t, 2, "admin", pwAdmin)
	waitBlocked := func() {
		e2eEventually(t, "the worker blocked", func() bool {
			return strings.Contains(admin.ClientList(ctx).Val(), "id="+strconv.FormatInt(id, 10)+" ") &&
				strings.Contains(admin.ClientList(ctx).Val(), "flags=b")
		})
	}

	done := block()
	waitBlocked()
	producer := env.client(t, 2, "producer", pwProducer)
	if got, err := producer.Do(ctx, "CLIENT", "UNBLOCK", id).Int(); err != nil || got != 0 {
		t.Fatalf("another user's CLIENT UNBLOCK = %d, %v; want 0", got, err)
	}
	other := env.client(t, 2, "worker", pwWorker)
	if got, err := other.Do(ctx, "CLIENT", "UNBLOCK", id).Int(); err != nil || got != 1 {
		t.Fatalf("the same user's CLIENT UNBLOCK = %d, %v; want 1", got, err)
	}
	if err := e2eRecv(t, "BLPOP", done); !errors.Is(err, redis.Nil) {
		t.Fatalf("BLPOP after CLIENT UNBLOCK = %v, want nil reply", err)
	}

	done = block()
	waitBlocked()
	if got, err := admin.Do(ctx, "CLIENT", "UNBLOCK", id, "ERROR").Int(); err != nil || got != 1 {
		t.Fatalf("admin's CLIENT UNBLOCK = %d, %v; want 1", got, err)
	}
	if err := e2eRecv(t, "BLPOP", done); err == nil || err.Error() != "UNBLOCKED client unblocked via CLIENT UNBLOCK" {
		t.Fatalf("BLPOP after CLIENT UNBLOCK ERROR = %v", err)
	}
}
