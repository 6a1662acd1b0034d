package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/envelope"
)

// End-to-end tests through go-redis, once with RESP3 (go-redis's default) and once with Protocol: 2.
// Where Redis has an answer, qgate's reply is compared with the same command sent straight to the
// backend redis-server.

// e2eMap turns a HELLO-style reply (a RESP3 map, or a flat RESP2 array) into a map with string keys.
func e2eMap(t *testing.T, v any) map[string]any {
	t.Helper()
	out := map[string]any{}
	switch m := v.(type) {
	case map[any]any:
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
	case []any:
		if len(m)%2 != 0 {
			t.Fatalf("flat map with odd length %d: %#v", len(m), m)
		}
		for i := 0; i < len(m); i += 2 {
			out[fmt.Sprint(m[i])] = m[i+1]
		}
	default:
		t.Fatalf("not a map: %#v", v)
	}
	return out
}

func TestGoRedis_PingEcho(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)

		if got, err := rdb.Ping(ctx).Result(); err != nil || got != "PONG" {
			t.Fatalf("PING = %q, %v; want PONG", got, err)
		}
		e2eSame(t, ctx, rdb, direct, "ping")
		e2eSame(t, ctx, rdb, direct, "ping", "hello")
		e2eSame(t, ctx, rdb, direct, "ping", "a", "b")
		binary := "bin\x00\r\n\xff\xfe end"
		if got, err := rdb.Echo(ctx, binary).Result(); err != nil || got != binary {
			t.Fatalf("ECHO = %q, %v; want %q", got, err, binary)
		}
		e2eSame(t, ctx, rdb, direct, "echo", "")
		e2eSame(t, ctx, rdb, direct, "echo")
		e2eSame(t, ctx, rdb, direct, "echo", "a", "b")
	})
}

func TestGoRedis_Hello(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		cn := rdb.Conn()
		defer cn.Close()

		v, err := cn.Do(ctx, "hello", proto).Result()
		if err != nil {
			t.Fatalf("HELLO %d: %v", proto, err)
		}
		m := e2eMap(t, v)
		want := map[string]any{"server": "redis", "version": commands.RedisVersion, "proto": int64(proto),
			"mode": "standalone", "role": "master"}
		for k, w := range want {
			if got := m[k]; got != w {
				t.Errorf("HELLO %d: %s = %#v, want %#v", proto, k, got, w)
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			t.Fatalf("CLIENT ID: %v", err)
		}
		if got, want := m["id"], id; got != want {
			t.Errorf("HELLO id = %#v, want CLIENT ID %d", got, want)
		}
		if mods, ok := m["modules"].([]any); !ok || len(mods) != 0 {
			t.Errorf("HELLO modules = %#v, want an empty array", m["modules"])
		}
		// HELLO without a version reports the current protocol and changes nothing.
		v, err = cn.Do(ctx, "hello").Result()
		if err != nil {
			t.Fatalf("HELLO: %v", err)
		}
		if got, want := e2eMap(t, v)["proto"], int64(proto); got != want {
			t.Errorf("HELLO (no version) proto = %#v, want %d", got, want)
		}
		// HELLO SETNAME names the connection.
		if _, err := cn.Do(ctx, "hello", proto, "setname", "via-hello").Result(); err != nil {
			t.Fatalf("HELLO SETNAME: %v", err)
		}
		if got, err := cn.ClientGetName(ctx).Result(); err != nil || got != "via-hello" {
			t.Errorf("CLIENT GETNAME after HELLO SETNAME = %q, %v; want via-hello", got, err)
		}

		// Errors are Redis's own.
		e2eSame(t, ctx, rdb, direct, "hello", 4)
		e2eSame(t, ctx, rdb, direct, "hello", 1)
		e2eSame(t, ctx, rdb, direct, "hello", "three")
		e2eSame(t, ctx, rdb, direct, "hello", proto, "bogus")
		e2eSame(t, ctx, rdb, direct, "hello", proto, "setname", "has space")
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after HELLO errors: %v", err)
		}
	})
}

func TestGoRedis_ClientCommands(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		cn := rdb.Conn()
		defer cn.Close()

		if err := cn.ClientGetName(ctx).Err(); err != redis.Nil {
			t.Fatalf("CLIENT GETNAME on an unnamed connection: err = %v, want redis.Nil", err)
		}
		if got, err := cn.ClientSetName(ctx, "worker-7").Result(); err != nil || !got {
			t.Fatalf("CLIENT SETNAME = %v, %v", got, err)
		}
		if got, err := cn.ClientGetName(ctx).Result(); err != nil || got != "worker-7" {
			t.Fatalf("CLIENT GETNAME = %q, %v; want worker-7", got, err)
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil || id <= 0 {
			t.Fatalf("CLIENT ID = %d, %v", id, err)
		}
		info, err := cn.ClientInfo(ctx).Result()
		if err != nil {
			t.Fatalf("CLIENT INFO does not parse: %v", err)
		}
		if got, want := info.ID, id; got != want {
			t.Errorf("CLIENT INFO id = %d, want %d", got, want)
		}
		if got, want := info.Name, "worker-7"; got != want {
			t.Errorf("CLIENT INFO name = %q, want %q", got, want)
		}
		if got, want := info.Resp, proto; got != want {
			t.Errorf("CLIENT INFO resp = %d, want %d", got, want)
		}
		if got, want := info.LibVer, redis.Version(); got != want {
			t.Errorf("CLIENT INFO lib-ver = %q, want %q (sent by go-redis with CLIENT SETINFO)", got, want)
		}
		if got := info.LibName; !strings.HasPrefix(got, "go-redis(") {
			t.Errorf("CLIENT INFO lib-name = %q, want go-redis(…)", got)
		}
		if got, want := info.LastCmd, "client|info"; got != want {
			t.Errorf("CLIENT INFO cmd = %q, want %q", got, want)
		}
		if got, want := info.DB, 0; got != want {
			t.Errorf("CLIENT INFO db = %d, want %d", got, want)
		}
		// Each connection has its own id.
		other := rdb.Conn()
		defer other.Close()
		if id2, err := other.ClientID(ctx).Result(); err != nil || id2 == id {
			t.Errorf("second connection's CLIENT ID = %d, %v; want an id other than %d", id2, err, id)
		}

		e2eSame(t, ctx, rdb, direct, "client", "setname", "has space")
		e2eSame(t, ctx, rdb, direct, "client", "setname", "new\nline")
		e2eSame(t, ctx, rdb, direct, "client", "setname")
		e2eSame(t, ctx, rdb, direct, "client", "getname", "extra")
		e2eSame(t, ctx, rdb, direct, "client", "no-evict", "maybe")
		e2eSame(t, ctx, rdb, direct, "client", "bogus")
		e2eSame(t, ctx, rdb, direct, "client")
		if got, err := cn.ClientGetName(ctx).Result(); err != nil || got != "worker-7" {
			t.Fatalf("CLIENT GETNAME after rejected renames = %q, %v; want worker-7", got, err)
		}
	})
}

// TestGoRedis_ClientNameOption: go-redis's ClientName option names every pooled connection during the
// handshake (HELLO … SETNAME).
func TestGoRedis_ClientNameOption(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto, func(o *redis.Options) { o.ClientName = "mailer" })
		if got, err := rdb.ClientGetName(ctx).Result(); err != nil || got != "mailer" {
			t.Fatalf("CLIENT GETNAME = %q, %v; want mailer", got, err)
		}
		info, err := rdb.ClientInfo(ctx).Result()
		if err != nil {
			t.Fatalf("CLIENT INFO: %v", err)
		}
		if got, want := info.Name, "mailer"; got != want {
			t.Errorf("CLIENT INFO name = %q, want %q", got, want)
		}
	})
}

func TestGoRedis_Select(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)

		if got, err := rdb.Do(ctx, "select", 0).Result(); err != nil || got != "OK" {
			t.Fatalf("SELECT 0 = %v, %v; want OK", got, err)
		}
		_, err := rdb.Do(ctx, "select", 1).Result()
		if got, want := e2eErrText(err), "ERR DB index is out of range"; got != want {
			t.Fatalf("SELECT 1: err = %q, want %q", got, want)
		}
		e2eSame(t, ctx, rdb, direct, "select", "x")
		e2eSame(t, ctx, rdb, direct, "select")
		// The connection is still on database 0 and usable.
		if got, err := rdb.RPush(ctx, "sel", "v").Result(); err != nil || got != 1 {
			t.Fatalf("RPUSH after SELECT 1 = %d, %v; want 1", got, err)
		}
		if got, err := e.Direct.LLen(ctx, "sel").Result(); err != nil || got != 1 {
			t.Fatalf("backend LLEN sel (db 0) = %d, %v; want 1", got, err)
		}

		// A client configured for DB 1 sends SELECT 1 on connect and is refused.
		db1 := e.Client(t, proto, func(o *redis.Options) { o.DB = 1; o.MaxRetries = -1 })
		err = db1.Ping(ctx).Err()
		if err == nil || !strings.Contains(err.Error(), "ERR DB index is out of range") {
			t.Fatalf("client with DB: 1: PING err = %v, want the SELECT refusal", err)
		}
	})
}

func TestGoRedis_PushPop(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)

		// Typed go-redis calls.
		if got, err := rdb.RPush(ctx, "jobs", "a", "b", "c").Result(); err != nil || got != 3 {
			t.Fatalf("RPUSH a b c = %d, %v; want 3", got, err)
		}
		if got, err := rdb.LPush(ctx, "jobs", "z", "y").Result(); err != nil || got != 5 {
			t.Fatalf("LPUSH z y = %d, %v; want 5", got, err)
		}
		if got, err := rdb.LRange(ctx, "jobs", 0, -1).Result(); err != nil || !reflect.DeepEqual(got, []string{"y", "z", "a", "b", "c"}) {
			t.Fatalf("LRANGE 0 -1 = %q, %v", got, err)
		}
		if got, err := rdb.LLen(ctx, "jobs").Result(); err != nil || got != 5 {
			t.Fatalf("LLEN = %d, %v; want 5", got, err)
		}
		if got, err := rdb.LPop(ctx, "jobs").Result(); err != nil || got != "y" {
			t.Fatalf("LPOP = %q, %v; want y", got, err)
		}
		if got, err := rdb.RPop(ctx, "jobs").Result(); err != nil || got != "c" {
			t.Fatalf("RPOP = %q, %v; want c", got, err)
		}
		if got, err := rdb.LPopCount(ctx, "jobs", 2).Result(); err != nil || !reflect.DeepEqual(got, []string{"z", "a"}) {
			t.Fatalf("LPOP jobs 2 = %q, %v; want [z a]", got, err)
		}
		if got, err := rdb.RPopCount(ctx, "jobs", 5).Result(); err != nil || !reflect.DeepEqual(got, []string{"b"}) {
			t.Fatalf("RPOP jobs 5 = %q, %v; want [b]", got, err)
		}
		if err := rdb.LPop(ctx, "jobs").Err(); err != redis.Nil {
			t.Fatalf("LPOP on a missing key: err = %v, want redis.Nil", err)
		}
		if err := rdb.RPop(ctx, "jobs").Err(); err != redis.Nil {
			t.Fatalf("RPOP on a missing key: err = %v, want redis.Nil", err)
		}
		if err := rdb.LPopCount(ctx, "jobs", 3).Err(); err != redis.Nil {
			t.Fatalf("LPOP missing 3: err = %v, want redis.Nil", err)
		}
		if err := rdb.RPopCount(ctx, "jobs", 3).Err(); err != redis.Nil {
			t.Fatalf("RPOP missing 3: err = %v, want redis.Nil", err)
		}
		if got, err := rdb.LLen(ctx, "jobs").Result(); err != nil || got != 0 {
			t.Fatalf("LLEN missing = %d, %v; want 0", got, err)
		}
		if got, err := rdb.LRange(ctx, "jobs", 0, -1).Result(); err != nil || len(got) != 0 {
			t.Fatalf("LRANGE missing = %q, %v; want []", got, err)
		}

		// Any bytes round-trip.
		binary := "\x00\xff\r\n\"{}\xc3\x28 " + strings.Repeat("x", 70000)
		if err := rdb.RPush(ctx, "bin", binary, "").Err(); err != nil {
			t.Fatalf("RPUSH binary: %v", err)
		}
		if got, err := rdb.LRange(ctx, "bin", 0, -1).Result(); err != nil || !reflect.DeepEqual(got, []string{binary, ""}) {
			t.Fatalf("LRANGE bin: %d items (%v), want the binary value and an empty one", len(got), err)
		}
		// The backend holds them as qgate stores them (in envelopes by default); the payloads are exact.
		stored, err := e.Direct.LRange(ctx, "bin", 0, -1).Result()
		if err != nil || len(stored) != 2 || envelope.Payload(stored[0]) != binary || envelope.Payload(stored[1]) != "" {
			t.Fatalf("backend bin: %d items (%v), want the binary value and an empty one", len(stored), err)
		}
		if got, err := rdb.LPop(ctx, "bin").Result(); err != nil || got != binary {
			t.Fatalf("LPOP binary: %d bytes, %v; want %d bytes", len(got), err, len(binary))
		}
		if got, err := rdb.LPop(ctx, "bin").Result(); err != nil || got != "" {
			t.Fatalf("LPOP empty value = %q, %v; want \"\"", got, err)
		}

		// Side by side with Redis: the same sequence on mirrored keys gives identical replies.
		steps := [][]any{
			{"rpush", "K", "1", "2", "3", "4", "5", "6"},
			{"lpush", "K", "0", "-1"},
			{"llen", "K"},
			{"lrange", "K", "0", "-1"},
			{"lrange", "K", "-3", "-1"},
			{"lrange", "K", "2", "1"},
			{"lrange", "K", "100", "200"},
			{"lrange", "K", "x", "1"},
			{"lpop", "K"},
			{"rpop", "K"},
			{"lpop", "K", "2"},
			{"rpop", "K", "2"},
			{"lpop", "K", "0"},
			{"rpop", "K", "0"},
			{"lpop", "K", "-1"},
			{"lpop", "K", "abc"},
			{"rpop", "K", "1.5"},
			{"lpop", "K", "1", "2"},
			{"lpop", "K", "100"},
			{"lpop", "K"},
			{"lpop", "K", "2"},
			{"rpop", "K", "0"},
			{"llen", "K"},
		}
		for _, s := range steps {
			s := s
			e2eMirror(t, ctx, rdb, direct, "mirror", func(key string) []any {
				out := append([]any(nil), s...)
				for i := range out {
					if out[i] == "K" {
						out[i] = key
					}
				}
				return out
			})
		}
	})
}

func TestGoRedis_WrongTypePassedThrough(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		if err := e.Direct.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, errText := e2eSame(t, ctx, rdb, direct, "rpush", "greeting", "x")
		if got, want := errText, "WRONGTYPE Operation against a key holding the wrong kind of value"; got != want {
			t.Fatalf("RPUSH on a string: err = %q, want %q", got, want)
		}
		for _, args := range [][]any{
			{"lpush", "greeting", "x", "y"},
			{"lpop", "greeting"},
			{"rpop", "greeting", "2"},
			{"llen", "greeting"},
			{"lrange", "greeting", "0", "-1"},
			{"blpop", "greeting", "0.1"},
			{"brpop", "nothing-here", "greeting", "0.1"},
		} {
			if _, errText := e2eSame(t, ctx, rdb, direct, args...); !strings.HasPrefix(errText, "WRONGTYPE ") {
				t.Fatalf("%v: err = %q, want WRONGTYPE", args, errText)
			}
		}
		if got, err := e.Direct.Get(ctx, "greeting").Result(); err != nil || got != "hello" {
			t.Fatalf("backend GET greeting = %q, %v; the string must be untouched", got, err)
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after WRONGTYPE: %v", err)
		}
	})
}

func TestGoRedis_UnknownCommandsNeverReachBackend(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		if err := e.Direct.RPush(ctx, "keep", "precious").Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.Direct.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}

		// A command Redis does not know either: the texts are identical.
		e2eSame(t, ctx, rdb, direct, "foobar", "a", "b")
		e2eSame(t, ctx, rdb, direct, "FooBar")

		cases := []struct {
			args []any
			want string
		}{
			{[]any{"set", "k", "v"}, "ERR unknown command 'set', with args beginning with: 'k' 'v' "},
			{[]any{"flushall"}, "ERR unknown command 'flushall', with args beginning with: "},
			{[]any{"FLUSHDB", "ASYNC"}, "ERR unknown command 'FLUSHDB', with args beginning with: 'ASYNC' "},
			{[]any{"config", "get", "maxmemory"}, "ERR unknown command 'config', with args beginning with: 'get' 'maxmemory' "},
			{[]any{"eval", "return redis.call('del', 'keep')", "0"}, "ERR unknown command 'eval', with args beginning with: 'return redis.call('del', 'keep')' '0' "},
			{[]any{"keys", "*"}, "ERR unknown command 'keys', with args beginning with: '*' "},
			{[]any{"rename", "keep", "k"}, "ERR unknown command 'rename', with args beginning with: 'keep' 'k' "},
			{[]any{"debug", "sleep", "0"}, "ERR unknown command 'debug', with args beginning with: 'sleep' '0' "},
			{[]any{"hset", "h", "f", "v"}, "ERR unknown command 'hset', with args beginning with: 'h' 'f' 'v' "},
			{[]any{"get", "keep"}, "ERR unknown command 'get', with args beginning with: 'keep' "},
		}
		for _, c := range cases {
			_, errText := e2eDo(ctx, rdb, c.args...)
			if got, want := errText, c.want; got != want {
				t.Errorf("%v: err = %q, want %q", c.args, got, want)
			}
		}
		// Nothing reached the backend: the data is there and Redis never ran those commands.
		if got, err := e.Direct.LRange(ctx, "keep", 0, -1).Result(); err != nil || !reflect.DeepEqual(got, []string{"precious"}) {
			t.Fatalf("backend keep = %q, %v; want [precious] (FLUSHALL/EVAL/RENAME must not be forwarded)", got, err)
		}
		if got, err := e.Direct.Exists(ctx, "k").Result(); err != nil || got != 0 {
			t.Fatalf("backend EXISTS k = %d, %v; want 0 (SET must not be forwarded)", got, err)
		}
		stats, err := e.Direct.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"set", "flushall", "flushdb", "eval", "keys", "rename", "debug", "multi", "hset", "get"} {
			if strings.Contains(stats, "cmdstat_"+name+":") {
				t.Errorf("backend ran %s (INFO commandstats):\n%s", name, stats)
			}
		}
		// The connection stays usable after each error.
		if got, err := rdb.LLen(ctx, "keep").Result(); err != nil || got != 1 {
			t.Fatalf("LLEN after errors = %d, %v; want 1", got, err)
		}
	})
}

func TestGoRedis_WrongArity(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)

		err := rdb.RPush(ctx, "k").Err()
		if got, want := e2eErrText(err), "ERR wrong number of arguments for 'rpush' command"; got != want {
			t.Fatalf("RPUSH k: err = %q, want %q", got, want)
		}
		for _, args := range [][]any{
			{"rpush", "k"},
			{"RPUSH"},
			{"lpush", "k"},
			{"lpop"},
			{"rpop"},
			{"lpop", "k", "1", "2"},
			{"llen"},
			{"llen", "a", "b"},
			{"lrange", "k", "0"},
			{"lrange", "k", "0", "1", "2"},
			{"blpop", "k"},
			{"brpop"},
			{"publish", "ch"},
			{"pubsub"},
			{"pubsub", "numpat", "x"},
			{"select"},
			{"command", "count", "x"},
		} {
			if _, errText := e2eSame(t, ctx, rdb, direct, args...); !strings.HasPrefix(errText, "ERR wrong number of arguments for ") {
				t.Fatalf("%v: err = %q, want an arity error", args, errText)
			}
		}
		if got, err := e.Direct.Exists(ctx, "k").Result(); err != nil || got != 0 {
			t.Fatalf("backend EXISTS k = %d, %v; want 0", got, err)
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after arity errors: %v", err)
		}
	})
}

func TestGoRedis_BadArguments(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		for _, args := range [][]any{
			{"blpop", "k", "abc"},
			{"blpop", "k", "-1"},
			{"brpop", "k", ""},
			{"blpop", "k", "nan"},
			{"blpop", "k", "inf"},   // Redis 7.0 casts it to a negative integer: "timeout is negative"
			{"blpop", "k", "1e300"}, // likewise
			{"lrange", "k", "0", "1.5"},
			{"pubsub", "nosuch"},
			{"command", "nosuch"},
		} {
			if _, errText := e2eSame(t, ctx, rdb, direct, args...); !strings.HasPrefix(errText, "ERR ") {
				t.Fatalf("%v: err = %q, want an ERR reply", args, errText)
			}
		}
	})
}

// TestGoRedis_Pipeline sends 160 mixed commands (successes, nil replies, errors) in one pipeline through
// qgate and the same commands straight to Redis; every reply must be identical and in order.
func TestGoRedis_Pipeline(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		if err := e.Direct.Set(ctx, "str", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		build := func(prefix string) [][]any {
			var cmds [][]any
			for i := 0; i < 20; i++ {
				q := prefix + "q" + strconv.Itoa(i%3)
				cmds = append(cmds,
					[]any{"rpush", q, "r" + strconv.Itoa(i), "s" + strconv.Itoa(i)},
					[]any{"lpush", q, "l" + strconv.Itoa(i)},
					[]any{"llen", q},
					[]any{"lrange", q, "0", "2"},
					[]any{"lpop", q},
					[]any{"rpop", q, "2"},
					[]any{"echo", "e" + strconv.Itoa(i)},
				)
				switch i % 4 {
				case 0:
					cmds = append(cmds, []any{"rpush", "str", "x"}) // WRONGTYPE
				case 1:
					cmds = append(cmds, []any{"lpop", prefix + "missing"}) // nil
				case 2:
					cmds = append(cmds, []any{"foobar", strconv.Itoa(i)}) // unknown command
				case 3:
					cmds = append(cmds, []any{"lpop", prefix + "missing", "3"}) // nil array
				}
			}
			return cmds
		}
		run := func(c *redis.Client, cmds [][]any) []*redis.Cmd {
			pipe := c.Pipeline()
			out := make([]*redis.Cmd, len(cmds))
			for i, args := range cmds {
				out[i] = pipe.Do(ctx, args...)
			}
			_, _ = pipe.Exec(ctx)
			return out
		}
		viaQgate := run(rdb, build("g:"))
		straight := run(direct, build("d:"))
		if got, want := len(viaQgate), 160; got != want {
			t.Fatalf("pipeline length %d, want %d", got, want)
		}
		for i := range viaQgate {
			gv, ge := viaQgate[i].Val(), e2eErrText(viaQgate[i].Err())
			wv, we := straight[i].Val(), e2eErrText(straight[i].Err())
			if ge == "<nil reply>" && we == ge {
				continue
			}
			// Key names differ between the two runs; nothing in these replies names a key, except errors
			// of the unknown command, which echo its (prefix-free) arguments.
			if ge != we || !reflect.DeepEqual(gv, wv) {
				t.Fatalf("reply %d to %v:\n qgate: %#v err=%q\n redis: %#v err=%q", i, viaQgate[i].Args(), gv, ge, wv, we)
			}
		}
		// The lists ended up identical too.
		for i := 0; i < 3; i++ {
			g, err1 := e.Direct.LRange(ctx, "g:q"+strconv.Itoa(i), 0, -1).Result()
			d, err2 := e.Direct.LRange(ctx, "d:q"+strconv.Itoa(i), 0, -1).Result()
			if err1 != nil || err2 != nil || !reflect.DeepEqual(g, d) {
				t.Fatalf("list %d: via qgate %q (%v), straight %q (%v)", i, g, err1, d, err2)
			}
		}
	})
}

// TestGoRedis_PipelineLarge: 1000 pushes then 1000 pops in one pipeline each keep their order.
func TestGoRedis_PipelineLarge(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)
		const n = 1000
		pipe := rdb.Pipeline()
		pushes := make([]*redis.IntCmd, n)
		for i := range pushes {
			pushes[i] = pipe.RPush(ctx, "big", "item-"+strconv.Itoa(i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("push pipeline: %v", err)
		}
		for i, c := range pushes {
			if got, want := c.Val(), int64(i+1); got != want {
				t.Fatalf("RPUSH #%d = %d, want %d", i, got, want)
			}
		}
		pipe = rdb.Pipeline()
		pops := make([]*redis.StringCmd, n)
		for i := range pops {
			pops[i] = pipe.LPop(ctx, "big")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("pop pipeline: %v", err)
		}
		for i, c := range pops {
			if got, want := c.Val(), "item-"+strconv.Itoa(i); got != want {
				t.Fatalf("LPOP #%d = %q, want %q", i, got, want)
			}
		}
	})
}

func TestGoRedis_Command(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)

		cmds, err := rdb.Command(ctx).Result()
		if err != nil {
			t.Fatalf("COMMAND does not parse: %v", err)
		}
		for _, name := range []string{"rpush", "lpush", "lpop", "rpop", "blpop", "brpop", "llen", "lrange",
			"publish", "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "pubsub",
			"ping", "echo", "hello", "auth", "select", "client", "command", "info", "quit", "reset"} {
			if cmds[name] == nil {
				t.Errorf("COMMAND lacks %s", name)
			}
		}
		for _, name := range []string{"set", "get", "flushall", "eval", "keys", "config", "debug"} {
			if cmds[name] != nil {
				t.Errorf("COMMAND lists %s, which qgate refuses", name)
			}
		}
		rpush := cmds["rpush"]
		if rpush == nil {
			t.Fatal("no rpush")
		}
		if got, want := rpush.Arity, int8(-3); got != want {
			t.Errorf("rpush arity = %d, want %d", got, want)
		}
		if !e2eContains(rpush.Flags, "write") || !e2eContains(rpush.ACLFlags, "@list") {
			t.Errorf("rpush flags %q, acl %q; want write and @list", rpush.Flags, rpush.ACLFlags)
		}
		if blpop := cmds["blpop"]; blpop == nil || !e2eContains(blpop.Flags, "blocking") {
			t.Errorf("blpop info %+v; want the blocking flag", blpop)
		}
		// Arity and key positions match Redis for every command both know (cluster-aware clients route by them).
		redisCmds, err := direct.Command(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for name, g := range cmds {
			w := redisCmds[name]
			if w == nil {
				if !strings.HasPrefix(name, "q") { // qgate's own commands are QDELIVERY, QACK …
					t.Errorf("qgate lists %s, which Redis %s does not know", name, commands.RedisVersion)
				}
				continue
			}
			if g.Arity != w.Arity || g.FirstKeyPos != w.FirstKeyPos || g.LastKeyPos != w.LastKeyPos || g.StepCount != w.StepCount {
				t.Errorf("%s: qgate arity/keys %d %d %d %d, Redis %d %d %d %d", name,
					g.Arity, g.FirstKeyPos, g.LastKeyPos, g.StepCount, w.Arity, w.FirstKeyPos, w.LastKeyPos, w.StepCount)
			}
		}

		count, err := rdb.Do(ctx, "command", "count").Int()
		if err != nil {
			t.Fatalf("COMMAND COUNT: %v", err)
		}
		if got, want := count, len(cmds); got != want {
			t.Errorf("COMMAND COUNT = %d, COMMAND lists %d", got, want)
		}
		list, err := rdb.CommandList(ctx, nil).Result()
		if err != nil {
			t.Fatalf("COMMAND LIST: %v", err)
		}
		if got, want := len(list), len(cmds); got != want || !e2eContains(list, "blpop") {
			t.Errorf("COMMAND LIST has %d names (%q), want %d including blpop", got, list, want)
		}
		info, err := rdb.Do(ctx, "command", "info", "rpush", "nosuch").Slice()
		if err != nil || len(info) != 2 || info[1] != nil {
			t.Fatalf("COMMAND INFO rpush nosuch = %#v, %v; want [entry nil]", info, err)
		}

		docs, err := rdb.Do(ctx, "command", "docs", "rpush", "client").Result()
		if err != nil {
			t.Fatalf("COMMAND DOCS: %v", err)
		}
		dm := e2eMap(t, docs)
		if len(dm) != 2 {
			t.Fatalf("COMMAND DOCS rpush client: %d entries, want 2: %#v", len(dm), docs)
		}
		rd := e2eMap(t, dm["rpush"])
		if got, want := rd["group"], "list"; got != want {
			t.Errorf("COMMAND DOCS rpush group = %#v, want %q", got, want)
		}
		if s, _ := rd["summary"].(string); s == "" {
			t.Errorf("COMMAND DOCS rpush has no summary: %#v", rd)
		}
		args, ok := rd["arguments"].([]any)
		if !ok || len(args) != 2 {
			t.Fatalf("COMMAND DOCS rpush arguments = %#v, want 2", rd["arguments"])
		}
		if got, want := e2eMap(t, args[0])["name"], "key"; got != want {
			t.Errorf("rpush first argument name = %#v, want %q", got, want)
		}
		if got, want := e2eMap(t, args[1])["name"], "element"; got != want {
			t.Errorf("rpush second argument name = %#v, want %q", got, want)
		}
		cd := e2eMap(t, dm["client"])
		subs := e2eMap(t, cd["subcommands"])
		if _, ok := subs["client|setname"]; !ok {
			t.Errorf("COMMAND DOCS client subcommands lack client|setname: %#v", cd["subcommands"])
		}
		all, err := rdb.Do(ctx, "command", "docs").Result()
		if err != nil {
			t.Fatalf("COMMAND DOCS (all): %v", err)
		}
		if got, want := len(e2eMap(t, all)), len(cmds); got != want {
			t.Errorf("COMMAND DOCS lists %d commands, COMMAND %d", got, want)
		}
		// Unknown names are left out, as Redis does.
		e2eSame(t, ctx, rdb, direct, "command", "docs", "nosuch")
	})
}

func e2eContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestGoRedis_Info(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)

		info, err := rdb.Info(ctx).Result()
		if err != nil {
			t.Fatalf("INFO: %v", err)
		}
		for _, want := range []string{"# Server", "# Clients", "# Qgate", "redis_version:" + commands.RedisVersion + "\r\n", "backend_kind:"} {
			if !strings.Contains(info, want) {
				t.Errorf("INFO lacks %q:\n%s", want, info)
			}
		}
		if strings.Contains(info, "\r\n\r\n\r\n") {
			t.Errorf("INFO has empty sections:\n%s", info)
		}
		m, err := rdb.InfoMap(ctx).Result()
		if err != nil {
			t.Fatalf("InfoMap does not parse INFO: %v", err)
		}
		if got, want := m["Server"]["redis_version"], commands.RedisVersion; got != want {
			t.Errorf("InfoMap Server.redis_version = %q, want %q", got, want)
		}
		if n, err := strconv.Atoi(m["Clients"]["connected_clients"]); err != nil || n < 1 {
			t.Errorf("InfoMap Clients.connected_clients = %q, want >= 1", m["Clients"]["connected_clients"])
		}
		if got := m["Qgate"]["backend_addr"]; !strings.Contains(got, e.Redis.Addr) {
			t.Errorf("INFO backend_addr = %q, want it to name %s", got, e.Redis.Addr)
		}
		qg, err := rdb.Info(ctx, "qgate").Result()
		if err != nil {
			t.Fatalf("INFO qgate: %v", err)
		}
		if !strings.HasPrefix(qg, "# Qgate\r\n") || strings.Contains(qg, "# Server") {
			t.Errorf("INFO qgate should hold only the Qgate section:\n%s", qg)
		}
	})
}

// e2eReceive reads the next pub/sub frame and fails unless it is of type T.
func e2eReceive[T any](t *testing.T, ctx context.Context, ps *redis.PubSub) T {
	t.Helper()
	msg, err := ps.ReceiveTimeout(ctx, e2eWaitBound)
	if err != nil {
		t.Fatalf("pub/sub receive: %v", err)
	}
	v, ok := msg.(T)
	if !ok {
		var want T
		t.Fatalf("pub/sub receive: got %T %+v, want %T", msg, msg, want)
	}
	return v
}

func e2eWantSub(t *testing.T, s *redis.Subscription, kind, channel string, count int) {
	t.Helper()
	if s.Kind != kind || s.Channel != channel || s.Count != count {
		t.Fatalf("subscription reply %s %q %d, want %s %q %d", s.Kind, s.Channel, s.Count, kind, channel, count)
	}
}

func e2eWantMsg(t *testing.T, m *redis.Message, pattern, channel, payload string) {
	t.Helper()
	if m.Pattern != pattern || m.Channel != channel || m.Payload != payload {
		t.Fatalf("message pattern=%q channel=%q payload=%q, want %q %q %q", m.Pattern, m.Channel, m.Payload, pattern, channel, payload)
	}
}

func TestGoRedis_PubSub(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)
		pub := e.Client(t, proto)

		ps := rdb.Subscribe(ctx, "ch1", "ch2")
		defer ps.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "subscribe", "ch1", 1)
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "subscribe", "ch2", 2)
		if err := ps.PSubscribe(ctx, "news.*"); err != nil {
			t.Fatal(err)
		}
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "psubscribe", "news.*", 3)
		// Subscribing again to a channel already held keeps the count.
		if err := ps.Subscribe(ctx, "ch1"); err != nil {
			t.Fatal(err)
		}
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "subscribe", "ch1", 3)

		if got, err := pub.Publish(ctx, "ch1", "hello").Result(); err != nil || got != 1 {
			t.Fatalf("PUBLISH ch1 = %d, %v; want 1 receiver", got, err)
		}
		e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), "", "ch1", "hello")
		binary := "\x00\xff\r\n" + strings.Repeat("p", 10000)
		if got, err := pub.Publish(ctx, "news.sport", binary).Result(); err != nil || got != 1 {
			t.Fatalf("PUBLISH news.sport = %d, %v; want 1 receiver", got, err)
		}
		e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), "news.*", "news.sport", binary)
		// A message published straight into Redis by another program arrives too.
		if err := e.Direct.Publish(ctx, "ch2", "legacy").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), "", "ch2", "legacy")
		if got, err := pub.Publish(ctx, "elsewhere", "x").Result(); err != nil || got != 0 {
			t.Fatalf("PUBLISH elsewhere = %d, %v; want 0", got, err)
		}

		// PING in subscribed state.
		if err := ps.Ping(ctx, "hi"); err != nil {
			t.Fatal(err)
		}
		pong := e2eReceive[*redis.Pong](t, ctx, ps)
		if pong.Payload != "hi" {
			t.Fatalf("PING hi in subscribed state: payload %q, want hi", pong.Payload)
		}

		if err := ps.Unsubscribe(ctx, "ch1"); err != nil {
			t.Fatal(err)
		}
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "unsubscribe", "ch1", 2)
		if got, err := pub.Publish(ctx, "ch1", "gone").Result(); err != nil || got != 0 {
			t.Fatalf("PUBLISH ch1 after UNSUBSCRIBE = %d, %v; want 0", got, err)
		}
		if err := ps.PUnsubscribe(ctx, "news.*"); err != nil {
			t.Fatal(err)
		}
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "punsubscribe", "news.*", 1)
		if got, err := pub.Publish(ctx, "ch2", "last").Result(); err != nil || got != 1 {
			t.Fatalf("PUBLISH ch2 = %d, %v; want 1", got, err)
		}
		e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), "", "ch2", "last")
		if err := ps.Unsubscribe(ctx); err != nil {
			t.Fatal(err)
		}
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "unsubscribe", "ch2", 0)
		e2eEventually(t, "backend unsubscribed from ch2", func() bool {
			n, err := e.Direct.PubSubNumSub(ctx, "ch2").Result()
			return err == nil && n["ch2"] == 0
		})
	})
}

// TestGoRedis_PubSubChannelDelivery uses go-redis's Channel() API, which most applications use.
func TestGoRedis_PubSubChannelDelivery(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)
		ps := rdb.Subscribe(ctx, "events")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil { // the subscribe confirmation
			t.Fatal(err)
		}
		ch := ps.Channel()
		const n = 500
		go func() {
			for i := 0; i < n; i++ {
				if err := rdb.Publish(ctx, "events", "m"+strconv.Itoa(i)).Err(); err != nil {
					return
				}
			}
		}()
		for i := 0; i < n; i++ {
			m := e2eRecv(t, "message "+strconv.Itoa(i), ch)
			if got, want := m.Payload, "m"+strconv.Itoa(i); got != want {
				t.Fatalf("message %d = %q, want %q (order is kept per publisher)", i, got, want)
			}
		}
	})
}

// TestGoRedis_PubSubCounts: qgate shares one backend subscription per channel, yet PUBLISH and PUBSUB
// NUMSUB count every local subscriber, as Redis would count separate connections.
func TestGoRedis_PubSubCounts(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)

		var subs []*redis.PubSub
		for i := 0; i < 3; i++ {
			ps := e.Client(t, proto).Subscribe(ctx, "news")
			defer ps.Close()
			e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "subscribe", "news", 1)
			subs = append(subs, ps)
		}
		if got, err := rdb.PubSubNumSub(ctx, "news", "nobody").Result(); err != nil || got["news"] != 3 || got["nobody"] != 0 || len(got) != 2 {
			t.Fatalf("PUBSUB NUMSUB news nobody = %v, %v; want news:3 nobody:0", got, err)
		}
		if got, err := e.Direct.PubSubNumSub(ctx, "news").Result(); err != nil || got["news"] != 1 {
			t.Fatalf("backend PUBSUB NUMSUB news = %v, %v; want 1 (one shared subscription)", got, err)
		}
		if got, err := rdb.Publish(ctx, "news", "hello").Result(); err != nil || got != 3 {
			t.Fatalf("PUBLISH news = %d, %v; want 3 receivers", got, err)
		}
		for _, ps := range subs {
			e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), "", "news", "hello")
		}

		// A subscriber straight on Redis counts too.
		dps := e.Direct.Subscribe(ctx, "news")
		defer dps.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, dps), "subscribe", "news", 1)
		if got, err := rdb.PubSubNumSub(ctx, "news").Result(); err != nil || got["news"] != 4 {
			t.Fatalf("PUBSUB NUMSUB news with a direct subscriber = %v, %v; want 4", got, err)
		}
		if got, err := rdb.Publish(ctx, "news", "again").Result(); err != nil || got != 4 {
			t.Fatalf("PUBLISH news = %d, %v; want 4", got, err)
		}
		for _, ps := range subs {
			e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, ps), "", "news", "again")
		}
		// The direct subscriber sees what qgate published into Redis: an envelope by default.
		m := e2eReceive[*redis.Message](t, ctx, dps)
		if m.Channel != "news" || envelope.Payload(m.Payload) != "again" {
			t.Fatalf("direct subscriber got channel %q payload %q, want news and (an envelope of) again", m.Channel, m.Payload)
		}

		// Patterns: two clients on a.*, one on b.*, one on both a.* and the channel a.x.
		p1 := e.Client(t, proto).PSubscribe(ctx, "a.*")
		defer p1.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, p1), "psubscribe", "a.*", 1)
		p2 := e.Client(t, proto).PSubscribe(ctx, "a.*")
		defer p2.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, p2), "psubscribe", "a.*", 1)
		p3 := e.Client(t, proto).PSubscribe(ctx, "b.*")
		defer p3.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, p3), "psubscribe", "b.*", 1)
		both := e.Client(t, proto).PSubscribe(ctx, "a.*")
		defer both.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, both), "psubscribe", "a.*", 1)
		if err := both.Subscribe(ctx, "a.x"); err != nil {
			t.Fatal(err)
		}
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, both), "subscribe", "a.x", 2)

		if got, err := rdb.PubSubNumPat(ctx).Result(); err != nil || got != 2 {
			t.Fatalf("PUBSUB NUMPAT = %d, %v; want 2 unique patterns", got, err)
		}
		// Deliveries: p1, p2, both (pattern) and both (channel).
		if got, err := rdb.Publish(ctx, "a.x", "ax").Result(); err != nil || got != 4 {
			t.Fatalf("PUBLISH a.x = %d, %v; want 4 deliveries", got, err)
		}
		e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, p1), "a.*", "a.x", "ax")
		e2eWantMsg(t, e2eReceive[*redis.Message](t, ctx, p2), "a.*", "a.x", "ax")
		got1 := e2eReceive[*redis.Message](t, ctx, both)
		got2 := e2eReceive[*redis.Message](t, ctx, both)
		if got1.Pattern == got2.Pattern || got1.Payload != "ax" || got2.Payload != "ax" {
			t.Fatalf("subscriber of a.* and a.x got %+v and %+v, want one pattern and one channel message", got1, got2)
		}
		if got, err := rdb.PubSubNumSub(ctx, "a.x").Result(); err != nil || got["a.x"] != 1 {
			t.Fatalf("PUBSUB NUMSUB a.x = %v, %v; want 1 (patterns do not count)", got, err)
		}

		chans, err := rdb.PubSubChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(chans)
		if want := []string{"a.x", "news"}; !reflect.DeepEqual(chans, want) {
			t.Fatalf("PUBSUB CHANNELS = %q, want %q", chans, want)
		}
		if got, err := rdb.PubSubChannels(ctx, "n*").Result(); err != nil || !reflect.DeepEqual(got, []string{"news"}) {
			t.Fatalf("PUBSUB CHANNELS n* = %q, %v; want [news]", got, err)
		}

		// Subscribers that leave stop counting.
		for _, ps := range subs {
			_ = ps.Close()
		}
		e2eEventually(t, "PUBSUB NUMSUB news = 1 after three subscribers left", func() bool {
			got, err := rdb.PubSubNumSub(ctx, "news").Result()
			return err == nil && got["news"] == 1
		})
		if got, err := rdb.Publish(ctx, "news", "last").Result(); err != nil || got != 1 {
			t.Fatalf("PUBLISH news after subscribers left = %d, %v; want 1", got, err)
		}
		_ = both.Close()
		_ = p1.Close()
		_ = p2.Close()
		e2eEventually(t, "PUBSUB NUMPAT = 1", func() bool {
			n, err := rdb.PubSubNumPat(ctx).Result()
			return err == nil && n == 1
		})
		e2eEventually(t, "PUBSUB CHANNELS = [news]", func() bool {
			got, err := rdb.PubSubChannels(ctx, "*").Result()
			return err == nil && reflect.DeepEqual(got, []string{"news"})
		})
	})
}

// TestGoRedis_PubSubManySubscribers: 50 qgate subscribers on one channel each receive every message once.
func TestGoRedis_PubSubManySubscribers(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	rdb := e.Client(t, 3)
	const subscribers, messages = 50, 20
	sc := e.Client(t, 3, func(o *redis.Options) { o.PoolSize = subscribers + 5 })
	var subs []*redis.PubSub
	for i := 0; i < subscribers; i++ {
		ps := sc.Subscribe(ctx, "fan")
		defer ps.Close()
		e2eWantSub(t, e2eReceive[*redis.Subscription](t, ctx, ps), "subscribe", "fan", 1)
		subs = append(subs, ps)
	}
	for i := 0; i < messages; i++ {
		if got, err := rdb.Publish(ctx, "fan", fmt.Sprint(i)).Result(); err != nil || got != subscribers {
			t.Fatalf("PUBLISH #%d = %d, %v; want %d", i, got, err, subscribers)
		}
	}
	for s, ps := range subs {
		for i := 0; i < messages; i++ {
			m := e2eReceive[*redis.Message](t, ctx, ps)
			if got, want := m.Payload, fmt.Sprint(i); got != want {
				t.Fatalf("subscriber %d message %d = %q, want %q", s, i, got, want)
			}
		}
	}
	if got, err := e.Direct.PubSubNumSub(ctx, "fan").Result(); err != nil || got["fan"] != 1 {
		t.Fatalf("backend NUMSUB fan = %v, %v; want 1 shared subscription", got, err)
	}
}

// e2eRawSession sends HELLO 3 (optional) on a raw connection to addr, then the commands, and returns
// every byte of the replies up to the reply of a final ECHO sentinel (pushes arriving later are dropped).
func e2eRawSession(t *testing.T, addr string, resp3 bool, cmds ...[]string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(e2eWaitBound))
	br := bufio.NewReader(nc)
	encode := func(args ...string) string {
		s := "*" + strconv.Itoa(len(args)) + "\r\n"
		for _, a := range args {
			s += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
		}
		return s
	}
	if resp3 {
		if _, err := io.WriteString(nc, encode("HELLO", "3")+encode("PING", "hello-done")); err != nil {
			t.Fatal(err)
		}
		for { // skip the HELLO map (its id and version differ) up to PING's reply
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "hello-done\r\n" {
				break
			}
		}
	}
	var req string
	for _, c := range cmds {
		req += encode(c...)
	}
	const sentinel = "$14\r\nend-of-replies\r\n"
	if _, err := io.WriteString(nc, req+encode("ECHO", "end-of-replies")); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(out), sentinel) {
		n, err := br.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, out)
		}
	}
	before, _, _ := strings.Cut(string(out), sentinel)
	return before
}

// TestSubscribedState_RepliesMatchRedis: in RESP3 a subscribed connection may run any command (Redis 7);
// in RESP2 only (P)(UN)SUBSCRIBE, PING, QUIT and RESET. Byte-for-byte the same replies as redis-server.
func TestSubscribedState_RepliesMatchRedis(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	session := func(prefix string) [][]string { // prefix separates the keys of the two runs
		return [][]string{
			{"SUBSCRIBE", "ch"},
			{"RPUSH", prefix + "k", "v1", "v2"},
			{"LLEN", prefix + "k"},
			{"LPOP", prefix + "k"},
			{"LPOP", prefix + "none"},
			{"PING"},
			{"PING", "x"},
			{"PSUBSCRIBE", "p*"},
			{"UNSUBSCRIBE"},
			{"PUNSUBSCRIBE"},
			{"UNSUBSCRIBE"},
		}
	}
	for _, resp3 := range []bool{true, false} {
		prefix := "resp2:"
		if resp3 {
			prefix = "resp3:"
		}
		got := e2eRawSession(t, e.Qgate.Addr, resp3, session(prefix+"q:")...)
		want := e2eRawSession(t, e.Redis.Addr, resp3, session(prefix+"d:")...)
		if got != want {
			t.Errorf("resp3=%v:\n qgate %q\n redis %q", resp3, got, want)
		}
	}
}
