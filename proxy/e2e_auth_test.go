package proxy_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Passwords of the test users; authPasswords are searched for in the logs.
const (
	pwDefault  = "default-Secret-1"
	pwProducer = "producer-Secret-2"
	pwWorker   = "worker-Secret-3"
	pwAdmin    = "admin-Secret-4"
	pwOff      = "off-Secret-5"
	pwWrong    = "wrong-Guess-6"
)

var authPasswords = []string{pwDefault, pwProducer, pwWorker, pwAdmin, pwOff, pwWrong}

var (
	hashMu    sync.Mutex
	hashCache = map[string]string{}
)

// authHash returns a bcrypt.MinCost hash of pw (tests stay fast; the cache is what is under test).
func authHash(t testing.TB, pw string) string {
	t.Helper()
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashCache[pw]; ok {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashCache[pw] = string(h)
	return string(h)
}

// authUsers is the example plus an admin, a disabled user and "default" (for AUTH password).
func authUsers(t testing.TB) []auth.UserConfig {
	off := false
	return []auth.UserConfig{
		{Name: "default", PasswordHash: authHash(t, pwDefault), Push: []string{"*"}, Pop: []string{"*"}, Publish: []string{"*"}, Subscribe: []string{"*"}},
		{Name: "producer", PasswordHash: authHash(t, pwProducer), Push: []string{"email_*"}, Publish: []string{"events.*"}},
		{Name: "worker", PasswordHash: authHash(t, pwWorker), Pop: []string{"email_*"}, Subscribe: []string{"events.*", "alerts"}},
		{Name: "admin", PasswordHash: authHash(t, pwAdmin), Admin: []string{"*"}, Pop: []string{"*"}},
		{Name: "off", PasswordHash: authHash(t, pwOff), Enabled: &off, Push: []string{"*"}},
	}
}

type authEnv struct {
	redis *proxytest.Redis
	q     *proxytest.Qgate
	cfg   proxy.Config
}

func startAuth(t *testing.T, tweak ...func(*proxy.Config)) *authEnv {
	t.Helper()
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Users = authUsers(t)
	// Every test connects from 127.0.0.1: keep the failed-login slow-down short (one test checks it).
	cfg.AuthFailureDelay, cfg.AuthFailureMaxDelay = time.Millisecond, 5*time.Millisecond
	for _, f := range tweak {
		f(&cfg)
	}
	return &authEnv{redis: r, q: proxytest.StartQgate(t, cfg), cfg: cfg}
}

// client is a go-redis client logged in as user (RESP3 sends HELLO 3 AUTH, RESP2 sends AUTH).
func (e *authEnv) client(t *testing.T, proto int, user, pw string) *redis.Client {
	return e.q.Client(t, func(o *redis.Options) {
		o.Protocol, o.Username, o.Password = proto, user, pw
		o.MaxRetries = -1
		o.DialerRetries = 1 // a refused login is not retried (each retry would be slowed down more)
	})
}

func authProtos(t *testing.T, f func(t *testing.T, proto int)) {
	for _, p := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(p), func(t *testing.T) { f(t, p) })
	}
}

// TestAuth_RawOrderOfChecks compares byte for byte with a redis-server started with --requirepass:
// unknown commands and arity errors come before NOAUTH; AUTH, HELLO, QUIT and RESET work before
// login (and PING on qgate, which Redis 7.0 refuses); HELLO without AUTH is refused; wrong passwords get WRONGPASS; RESET logs out.
func TestAuth_RawOrderOfChecks(t *testing.T) {
	env := newRawEnv(t, func(c *proxy.Config) {
		c.Users = []auth.UserConfig{{Name: "default", PasswordHash: authHash(t, pwDefault), Push: []string{"*"}, Pop: []string{"*"}}}
	}, "--requirepass", pwDefault)
	env.both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "NOSUCHCMD a\r\n")
		expect(t, rd, "-ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' \r\n")
		send(t, c, "RPUSH q\r\n")
		expect(t, rd, "-ERR wrong number of arguments for 'rpush' command\r\n")
		send(t, c, "RPUSH q v\r\nLLEN q\r\nECHO x\r\nCLIENT ID\r\nINFO\r\n")
		expect(t, rd, strings.Repeat("-NOAUTH Authentication required.\r\n", 5))
		send(t, c, "PING\r\n")
		if tg.redis {
			expect(t, rd, "-NOAUTH Authentication required.\r\n") // Redis 7.0 refuses PING too
		} else {
			expect(t, rd, "+PONG\r\n") // qgate allows it, as DESIGN.md says (health checks)
		}
		send(t, c, "HELLO 3\r\n")
		expect(t, rd, "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n")
		send(t, c, "AUTH "+pwWrong+"\r\n")
		expect(t, rd, "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
		send(t, c, "HELLO 3 AUTH default "+pwWrong+"\r\n")
		expect(t, rd, "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
		send(t, c, "AUTH a b c\r\n")
		expect(t, rd, "-ERR syntax error\r\n")
		send(t, c, "AUTH "+pwDefault+"\r\nRPUSH authq v\r\n")
		expect(t, rd, "+OK\r\n:1\r\n")
		send(t, c, "RESET\r\nLLEN authq\r\n")
		expect(t, rd, "+RESET\r\n-NOAUTH Authentication required.\r\n")
		send(t, c, "HELLO 2 AUTH default "+pwDefault+"\r\n")
		expectHello(t, rd, 2, tg.version)
		send(t, c, "LLEN authq\r\n")
		expect(t, rd, ":1\r\n")
		c2, rd2 := dialRaw(t, tg.addr)
		send(t, c2, "HELLO 3 AUTH default "+pwDefault+"\r\n")
		expectHello(t, rd2, 3, tg.version)
		send(t, c2, "QUIT\r\n")
		expect(t, rd2, "+OK\r\n")
		expectEOF(t, rd2)
	})
}

// TestAuth_OpenWithoutUsers: no users configured, a warning at start, and AUTH accepts anything.
func TestAuth_OpenWithoutUsers(t *testing.T) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	if !strings.Contains(q.Logs.String(), "no users configured") {
		t.Fatalf("no warning about the open proxy in:\n%s", q.Logs.String())
	}
	ctx := context.Background()
	c := q.Client(t, func(o *redis.Options) { o.Username, o.Password = "whoever", "anything" })
	if err := c.RPush(ctx, "openq", "v").Err(); err != nil {
		t.Fatalf("RPUSH with any credentials on an open qgate: %v", err)
	}
	raw, _ := r.Client(t).LIndex(ctx, "openq", 0).Result()
	if env, ok := envelope.Decode([]byte(raw)); !ok || env.Producer != "whoever" {
		t.Fatalf("producer = %+v, %v; want whoever", env, ok)
	}
}

// TestAuth_GoRedisLogin: go-redis logs in with HELLO 3 AUTH (RESP3) and AUTH (RESP2); wrong
// passwords, unknown and disabled users are refused with WRONGPASS; AUTH password is user default.
func TestAuth_GoRedisLogin(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	authProtos(t, func(t *testing.T, proto int) {
		c := e.client(t, proto, "producer", pwProducer)
		if err := c.RPush(ctx, "email_"+strconv.Itoa(proto), "x").Err(); err != nil {
			t.Fatalf("RPUSH as producer: %v", err)
		}
		if got := c.ClientInfo(ctx).Val(); got == nil || got.User != "producer" {
			t.Fatalf("CLIENT INFO user = %+v, want producer", got)
		}
		d := e.client(t, proto, "", pwDefault) // AUTH password / HELLO 3 AUTH default password
		if err := d.Ping(ctx).Err(); err != nil {
			t.Fatalf("login as default: %v", err)
		}
		for _, bad := range []struct{ user, pw string }{{"producer", pwWrong}, {"nobody", pwProducer}, {"off", pwOff}, {"", pwWrong}} {
			err := e.client(t, proto, bad.user, bad.pw).Ping(ctx).Err()
			if got := e2eAuthErr(err); got != "WRONGPASS invalid username-password pair or user is disabled." {
				t.Errorf("login %s: %q", bad.user, got)
			}
		}
		if err := e.client(t, proto, "", "").LLen(ctx, "email_x").Err(); e2eAuthErr(err) != "NOAUTH Authentication required." {
			t.Errorf("LLEN without login: %v", err)
		}
	})
}

func e2eAuthErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestAuth_Redigo logs in through redigo (RESP2, AUTH user password and AUTH password).
func TestAuth_Redigo(t *testing.T) {
	e := startAuth(t)
	w, err := redigo.Dial("tcp", e.q.Addr, redigo.DialUsername("worker"), redigo.DialPassword(pwWorker))
	if err != nil {
		t.Fatalf("redigo as worker: %v", err)
	}
	defer w.Close()
	if _, err := w.Do("LLEN", "email_q"); err != nil {
		t.Fatalf("LLEN as worker: %v", err)
	}
	if _, err := w.Do("RPUSH", "email_q", "x"); err == nil || err.Error() != "NOPERM user 'worker' has no 'push' right on queue 'email_q'" {
		t.Fatalf("RPUSH as worker: %v", err)
	}
	d, err := redigo.Dial("tcp", e.q.Addr, redigo.DialPassword(pwDefault))
	if err != nil {
		t.Fatalf("redigo AUTH password: %v", err)
	}
	defer d.Close()
	if got, err := redigo.Int(d.Do("RPUSH", "any", "x")); err != nil || got != 1 {
		t.Fatalf("RPUSH as default = %v, %v", got, err)
	}
	if _, err := redigo.Dial("tcp", e.q.Addr, redigo.DialUsername("worker"), redigo.DialPassword(pwWrong)); err == nil ||
		!strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("redigo with a wrong password: %v", err)
	}
}

// TestAuth_NoPermPerVerb checks every verb's right, on queues and channels, in both protocols.
func TestAuth_NoPermPerVerb(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	authProtos(t, func(t *testing.T, proto int) {
		p := e.client(t, proto, "producer", pwProducer)
		w := e.client(t, proto, "worker", pwWorker)
		noperm := func(user, right, kind, name string) string {
			return fmt.Sprintf("NOPERM user '%s' has no '%s' right on %s '%s'", user, right, kind, name)
		}
		cases := []struct {
			c    *redis.Client
			args []any
			want string
		}{
			{p, []any{"RPUSH", "email_q", "a"}, ""},
			{p, []any{"LPUSH", "email_q", "b"}, ""},
			{p, []any{"RPUSH", "sms_q", "a"}, noperm("producer", "push", "queue", "sms_q")},
			{p, []any{"LPUSH", "sms_q", "a"}, noperm("producer", "push", "queue", "sms_q")},
			{p, []any{"LPOP", "email_q"}, noperm("producer", "pop", "queue", "email_q")},
			{p, []any{"RPOP", "email_q", "2"}, noperm("producer", "pop", "queue", "email_q")},
			{p, []any{"LLEN", "email_q"}, noperm("producer", "pop", "queue", "email_q")},
			{p, []any{"LRANGE", "email_q", "0", "-1"}, noperm("producer", "pop", "queue", "email_q")},
			{p, []any{"BLPOP", "email_q", "0.01"}, noperm("producer", "pop", "queue", "email_q")},
			{p, []any{"PUBLISH", "events.x", "m"}, ""},
			{p, []any{"PUBLISH", "alerts", "m"}, noperm("producer", "publish", "channel", "alerts")},
			{w, []any{"RPUSH", "email_q", "a"}, noperm("worker", "push", "queue", "email_q")},
			{w, []any{"LLEN", "email_q"}, ""},
			{w, []any{"LRANGE", "email_q", "0", "0"}, ""},
			{w, []any{"LPOP", "email_q"}, ""},
			{w, []any{"RPOP", "email_q"}, ""},
			{w, []any{"BLPOP", "email_q", "email_z", "0.01"}, "<nil>"},
			{w, []any{"BRPOP", "email_q", "sms_q", "0.01"}, noperm("worker", "pop", "queue", "sms_q")}, // every key is checked
			{w, []any{"LPOP", "sms_q"}, noperm("worker", "pop", "queue", "sms_q")},
			{w, []any{"PUBLISH", "events.x", "m"}, noperm("worker", "publish", "channel", "events.x")},
			{w, []any{"PUBSUB", "NUMSUB", "x"}, ""},
			{w, []any{"ECHO", "x"}, ""},
		}
		for _, tc := range cases {
			_, err := tc.c.Do(ctx, tc.args...).Result()
			got := e2eAuthErr(err)
			if err == redis.Nil {
				got = "<nil>"
			}
			if tc.want == "<nil>" && got == "" {
				got = "<nil>"
			}
			if got != tc.want {
				t.Errorf("%v: got %q, want %q", tc.args, got, tc.want)
			}
		}
	})
	info := e.client(t, 3, "admin", pwAdmin).Info(ctx, "stats").Val()
	if e2eInfoValue(info, "acl_access_denied_key") == "0" || e2eInfoValue(info, "acl_access_denied_channel") == "0" {
		t.Errorf("NOPERM counters not in INFO stats:\n%s", info)
	}
}

// e2eInfoValue returns field from an INFO text.
func e2eInfoValue(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// TestAuth_SubscribeRights: a SUBSCRIBE naming any channel outside the rights is refused as a whole;
// PSUBSCRIBE patterns are allowed only when every channel they can match is inside the subscribe
// globs (see TestAuth_PSubscribeCoveredByBroaderRight); allowed subscriptions receive messages.
func TestAuth_SubscribeRights(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	// Raw RESP2: after the refused SUBSCRIBE the connection is not in subscribed state.
	c, rd := dialRaw(t, e.q.Addr)
	send(t, c, "AUTH worker "+pwWorker+"\r\nSUBSCRIBE events.a sms events.b\r\nPING\r\n")
	expect(t, rd, "+OK\r\n-NOPERM user 'worker' has no 'subscribe' right on channel 'sms'\r\n+PONG\r\n")
	for _, pat := range []string{"*", "events*", "e*", "alerts*", "e?ents.*", "[e]vents.*"} {
		send(t, c, "PSUBSCRIBE "+pat+"\r\n")
		expect(t, rd, "-NOPERM user 'worker' has no 'subscribe' right on pattern '"+pat+"'\r\n")
	}
	send(t, c, "PSUBSCRIBE events.* alerts events.login\r\n")
	expect(t, rd, "*3\r\n$10\r\npsubscribe\r\n$8\r\nevents.*\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$6\r\nalerts\r\n:2\r\n*3\r\n$10\r\npsubscribe\r\n$12\r\nevents.login\r\n:3\r\n")

	authProtos(t, func(t *testing.T, proto int) {
		w := e.client(t, proto, "worker", pwWorker)
		if err := w.Subscribe(ctx, "events.a", "sms").Ping(ctx); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			// go-redis reports the subscribe error on the next receive.
			ps := w.Subscribe(ctx, "events.a", "sms")
			_, err := ps.Receive(ctx)
			if err == nil || !strings.Contains(err.Error(), "NOPERM user 'worker' has no 'subscribe' right on channel 'sms'") {
				t.Fatalf("SUBSCRIBE events.a sms: %v", err)
			}
			_ = ps.Close()
		}
		ps := w.PSubscribe(ctx, "events.*")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatalf("PSUBSCRIBE events.*: %v", err)
		}
		p := e.client(t, proto, "producer", pwProducer)
		if err := p.Publish(ctx, "events.signup", "hello").Err(); err != nil {
			t.Fatalf("PUBLISH: %v", err)
		}
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil || msg.Channel != "events.signup" || msg.Payload != "hello" {
			t.Fatalf("message = %+v, %v", msg, err)
		}
	})
}

// TestAuth_PSubscribeCoveredByBroaderRight: subscribe ["*"] allows any pattern (Redis ACL's &*);
// subscribe ["events.*"] allows a pattern whose literal prefix starts with "events.", such as
// events.sub.*, which then receives what is published on its channels; a pattern that could match a
// channel outside the right (e*) is still refused.
func TestAuth_PSubscribeCoveredByBroaderRight(t *testing.T) {
	e := startAuth(t)
	c, rd := dialRaw(t, e.q.Addr)
	send(t, c, "AUTH "+pwDefault+"\r\nPSUBSCRIBE acc_x.* ?\r\n") // default has subscribe: ["*"]
	expect(t, rd, "+OK\r\n*3\r\n$10\r\npsubscribe\r\n$7\r\nacc_x.*\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$1\r\n?\r\n:2\r\n")

	w, wrd := dialRaw(t, e.q.Addr)
	send(t, w, "AUTH worker "+pwWorker+"\r\nPSUBSCRIBE e*\r\nPSUBSCRIBE events.sub.* events.[a-z]?\r\n")
	expect(t, wrd, "+OK\r\n-NOPERM user 'worker' has no 'subscribe' right on pattern 'e*'\r\n"+
		"*3\r\n$10\r\npsubscribe\r\n$12\r\nevents.sub.*\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$13\r\nevents.[a-z]?\r\n:2\r\n")

	ctx := e2eCtx(t)
	p := e.client(t, 2, "producer", pwProducer)
	if got, err := p.Publish(ctx, "events.sub.login", "hi").Result(); err != nil || got != 1 {
		t.Fatalf("PUBLISH events.sub.login = %d, %v; want 1 (events.sub.*)", got, err)
	}
	expect(t, wrd, "*4\r\n$8\r\npmessage\r\n$12\r\nevents.sub.*\r\n$16\r\nevents.sub.login\r\n$2\r\nhi\r\n")
}

// TestAuth_InfoSectionsAndProducer: a user without admin sees only Server, Clients and Persistence
// (with redis_version and loading:0 for ioredis's ready check); an admin sees everything; envelopes
// name the authenticated user as producer.
func TestAuth_InfoSectionsAndProducer(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	info := e.client(t, 2, "worker", pwWorker).Info(ctx).Val()
	for _, want := range []string{"# Server", "redis_version:", "# Clients", "# Persistence", "loading:0"} {
		if !strings.Contains(info, want) {
			t.Errorf("worker INFO lacks %q", want)
		}
	}
	for _, not := range []string{"# Stats", "# Qgate", "backend_addr", "# Replication"} {
		if strings.Contains(info, not) {
			t.Errorf("worker INFO shows %q", not)
		}
	}
	if got := e.client(t, 2, "worker", pwWorker).Info(ctx, "qgate").Val(); strings.Contains(got, "backend") {
		t.Errorf("INFO qgate for a non-admin: %q", got)
	}
	all := e.client(t, 3, "admin", pwAdmin).Info(ctx).Val()
	for _, want := range []string{"# Stats", "acl_access_denied_auth:", "# Qgate", "users:5", "auth_bcrypt_checks:"} {
		if !strings.Contains(all, want) {
			t.Errorf("admin INFO lacks %q", want)
		}
	}
	if err := e.client(t, 3, "producer", pwProducer).RPush(ctx, "email_p", "task").Err(); err != nil {
		t.Fatal(err)
	}
	raw := e.redis.Client(t).LIndex(ctx, "email_p", 0).Val()
	if env, ok := envelope.Decode([]byte(raw)); !ok || env.Producer != "producer" {
		t.Fatalf("envelope producer = %+v, %v", env, ok)
	}
}

// TestAuth_SecretsNeverLogged runs logins that succeed and fail (AUTH, HELLO AUTH, a password typed
// as user name, pushes of the passwords as payloads) at debug level and searches the captured log.
func TestAuth_SecretsNeverLogged(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		_ = e.client(t, proto, "producer", pwProducer).RPush(ctx, "email_s", pwWorker, pwAdmin).Err()
		_ = e.client(t, proto, "producer", pwWrong).Ping(ctx).Err()
		_ = e.client(t, proto, pwOff, pwWrong).Ping(ctx).Err() // a password in the user field
		_ = e.client(t, proto, "off", pwOff).Ping(ctx).Err()
		_ = e.client(t, proto, "", pwDefault).Publish(ctx, "events.x", pwDefault).Err()
	}
	c, rd := dialRaw(t, e.q.Addr)
	send(t, c, "AUTH "+pwAdmin+" "+pwWrong+" extra\r\n*2\r\n$4\r\nAUTH\r\n$3\r\n") // syntax error, then a protocol error
	send(t, c, pwWrong+"\r\n")
	expect(t, rd, "-ERR syntax error\r\n-WRONGPASS")
	logs := e.q.Logs.String()
	for _, pw := range authPasswords {
		if strings.Contains(logs, pw) {
			t.Errorf("log contains the secret %q:\n%s", pw, logs)
		}
	}
	if !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, "user=producer") ||
		!strings.Contains(logs, `user="(unknown user)"`) || !strings.Contains(logs, "addr=127.0.0.1:") {
		t.Errorf("failed logins not logged with user and address:\n%s", logs)
	}
}

// TestAuth_ThousandLoginsOneBcrypt: 1,000 sequential reconnects, then 1,000 logins from 100
// concurrent connections on a fresh qgate (cold cache), each cost exactly one bcrypt comparison.
func TestAuth_ThousandLoginsOneBcrypt(t *testing.T) {
	login := func(t *testing.T, addr string) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("AUTH worker " + pwWorker + "\r\nPING\r\n")); err != nil {
			t.Error(err)
			return
		}
		buf := make([]byte, 12)
		n := 0
		for n < len(buf) {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			n += m
		}
		if string(buf) != "+OK\r\n+PONG\r\n" {
			t.Errorf("AUTH+PING = %q", buf)
		}
	}
	t.Run("sequential", func(t *testing.T) {
		e := startAuth(t)
		for i := 0; i < 1000 && !t.Failed(); i++ {
			login(t, e.q.Addr)
		}
		if got := e.q.Server.BcryptVerifications(); got != 1 {
			t.Fatalf("1,000 sequential logins ran %d bcrypt comparisons, want 1", got)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		e := startAuth(t)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 100; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 10; i++ {
					login(t, e.q.Addr)
				}
			}()
		}
		close(start)
		wg.Wait()
		if got := e.q.Server.BcryptVerifications(); got != 1 {
			t.Fatalf("1,000 logins on 100 concurrent connections ran %d bcrypt comparisons, want 1", got)
		}
	})
}

// TestAuth_FailedLoginsSlowedDown: the replies of failures from one address wait longer and longer
// (lower bounds only), are counted in INFO, and a correct password right after them is not delayed.
func TestAuth_FailedLoginsSlowedDown(t *testing.T) {
	e := startAuth(t, func(c *proxy.Config) {
		c.AuthFailureDelay, c.AuthFailureMaxDelay = 50*time.Millisecond, 1500*time.Millisecond
	})
	c, rd := dialRaw(t, e.q.Addr)
	// auth_failure_delay doubling: 50, 100, 200, 400 ms, less what the count decayed meanwhile.
	for i, least := range []time.Duration{45, 90, 180, 360} {
		start := time.Now()
		send(t, c, "AUTH worker "+pwWrong+"\r\n")
		expect(t, rd, "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
		if got, want := time.Since(start), least*time.Millisecond; got < want {
			t.Fatalf("failure %d answered after %s, want at least %s", i+1, got, want)
		}
	}
	start := time.Now()
	send(t, c, "AUTH worker "+pwWorker+"\r\n")
	expect(t, rd, "+OK\r\n")
	if got, want := time.Since(start), 300*time.Millisecond; got >= want {
		t.Fatalf("correct login after 4 failures took %s, want under %s", got, want)
	}
	send(t, c, "INFO stats\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := rd.br.Read(buf)
	if got := e2eInfoValue(string(buf[:n]), "acl_access_denied_auth"); got != "" {
		t.Fatalf("worker (no admin) sees INFO stats: %q", got)
	}
	info := e.client(t, 3, "admin", pwAdmin).Info(context.Background(), "stats").Val()
	if got := e2eInfoValue(info, "acl_access_denied_auth"); got != "4" {
		t.Fatalf("acl_access_denied_auth = %q, want 4", got)
	}
}

// TestAuth_OthersFailuresDoNotSlowACorrectLogin: after 25 wrong logins from the same address on
// other connections (a misconfigured service behind the same NAT), correct logins, uncached and then
// cached, are answered at once, although the failures' own replies still wait.
func TestAuth_OthersFailuresDoNotSlowACorrectLogin(t *testing.T) {
	e := startAuth(t, func(c *proxy.Config) {
		c.AuthFailureDelay, c.AuthFailureMaxDelay = 50*time.Millisecond, 1500*time.Millisecond
	})
	for i := 0; i < 25; i++ {
		c, _ := dialRaw(t, e.q.Addr)
		send(t, c, "AUTH worker "+pwWrong+strconv.Itoa(i)+"\r\n")
	}
	e2eEventually(t, "25 failures", func() bool { return e.q.Server.Stats().AuthFailures >= 25 })
	for _, what := range []string{"uncached", "cached"} {
		start := time.Now()
		c, rd := dialRaw(t, e.q.Addr)
		send(t, c, "AUTH worker "+pwWorker+"\r\nPING\r\n")
		expect(t, rd, "+OK\r\n+PONG\r\n")
		if got, want := time.Since(start), 300*time.Millisecond; got >= want {
			t.Fatalf("%s correct login after 25 failures took %s, want under %s", what, got, want)
		}
	}
}

// TestAuth_WrongPasswordFloodBoundsBcrypt: 50 connections send wrong passwords as fast as they are
// answered; the bcrypt comparisons running at once never exceed the bound, and a logged-in client's
// PINGs stay fast. The bound is asserted strictly, the latency loosely (a shared 2-core machine).
func TestAuth_WrongPasswordFloodBoundsBcrypt(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	w := e.client(t, 3, "worker", pwWorker)
	if err := w.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		c, rd := dialRaw(t, e.q.Addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				// Distinct passwords: identical ones would share one bcrypt.
				if _, err := fmt.Fprintf(c, "AUTH producer wrong-%d-%d\r\n", i, j); err != nil {
					t.Errorf("flood %d: %v", i, err)
					return
				}
				if line, err := rd.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "-WRONGPASS") {
					t.Errorf("flood %d: %q, %v", i, line, err)
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	e2eEventually(t, "the flood under way", func() bool { return e.q.Server.BcryptVerifications() >= 20 })
	// PING back to back until at least 200 PINGs and 20 more bcrypts ran, so they share the CPU.
	before := e.q.Server.BcryptVerifications()
	var lat []time.Duration
	for len(lat) < 200 || e.q.Server.BcryptVerifications()-before < 20 {
		start := time.Now()
		if err := w.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING during the flood: %v", err)
		}
		lat = append(lat, time.Since(start))
	}
	during := e.q.Server.BcryptVerifications() - before
	slices.Sort(lat)
	bound := int64(min(auth.DefaultBcrypts(), auth.DefaultPerAddrBcrypts)) // every client is 127.0.0.1
	if got := e.q.Server.BcryptPeak(); got > bound || got < 1 {
		t.Errorf("peak of bcrypt comparisons at once = %d, want 1..%d", got, bound)
	}
	if p99, want := lat[len(lat)*99/100-1], 100*time.Millisecond; p99 >= want {
		t.Errorf("PING p99 during the flood = %s (max %s), want under %s", p99, lat[len(lat)-1], want)
	}
	t.Logf("%d bcrypts during %d PINGs; PING p50 %s p99 %s max %s", during, len(lat), lat[len(lat)/2], lat[len(lat)*99/100-1], lat[len(lat)-1])
}

// TestAuth_LoginBusyPastWait: a login that cannot get its turn to run bcrypt within the wait bound
// is refused with its own error, neither WRONGPASS nor counted as a failure, and logged.
func TestAuth_LoginBusyPastWait(t *testing.T) {
	e := startAuth(t)
	e.q.Server.SetLoginWait(time.Nanosecond) // any contention is past the bound
	busy, wrong := 0, 0
	for round := 0; round < 10 && busy == 0; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 20; i++ {
			c, rd := dialRaw(t, e.q.Addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_ = c.SetDeadline(time.Now().Add(rawTimeout))
				_, _ = fmt.Fprintf(c, "AUTH worker %s-%d-%d\r\n", pwWrong, round, i)
				line, err := rd.br.ReadString('\n')
				mu.Lock()
				defer mu.Unlock()
				switch line {
				case "-" + commands.ErrLoginBusy + "\r\n":
					busy++
				case "-" + commands.ErrWrongPass + "\r\n":
					wrong++
				default:
					t.Errorf("reply %q, %v", line, err)
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	if busy == 0 {
		t.Fatalf("no login refused as busy in %d attempts", wrong)
	}
	if got, want := e.q.Server.Stats().AuthFailures, int64(wrong); got != want {
		t.Errorf("AuthFailures = %d, want %d (the WRONGPASS replies only)", got, want)
	}
	if logs := e.q.Logs.String(); !strings.Contains(logs, "login refused unchecked") || strings.Contains(logs, pwWrong) {
		t.Errorf("busy logins not logged, or logged with the password:\n%s", logs)
	}
}

// TestAuth_ShutdownInterruptsFailureDelay: a connection waiting out the delay of its failed login
// gets its WRONGPASS at shutdown, which does not wait for the delay.
func TestAuth_ShutdownInterruptsFailureDelay(t *testing.T) {
	e := startAuth(t, func(c *proxy.Config) { c.AuthFailureDelay, c.AuthFailureMaxDelay = time.Hour, time.Hour })
	c, rd := dialRaw(t, e.q.Addr)
	send(t, c, "AUTH worker "+pwWrong+"\r\n")
	e2eEventually(t, "the failure", func() bool { return e.q.Server.Stats().AuthFailures == 1 })
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.q.Stop() }()
	if err := e2eRecv(t, "the shutdown", stopped); err != nil {
		t.Fatalf("shutdown with a delayed failure: %v", err)
	}
	if got, want := time.Since(start), 5*time.Second; got >= want {
		t.Fatalf("shutdown took %s, want under %s", got, want)
	}
	expect(t, rd, "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
	expectEOF(t, rd)
}

// TestAuth_DisconnectEndsFailureDelay: a client that leaves while its failed login's reply waits
// frees its connection at once.
func TestAuth_DisconnectEndsFailureDelay(t *testing.T) {
	e := startAuth(t, func(c *proxy.Config) { c.AuthFailureDelay, c.AuthFailureMaxDelay = time.Hour, time.Hour })
	c, _ := dialRaw(t, e.q.Addr)
	send(t, c, "AUTH worker "+pwWrong+"\r\n")
	e2eEventually(t, "the failure", func() bool { return e.q.Server.Stats().AuthFailures == 1 })
	_ = c.Close()
	e2eEventually(t, "the connection closed", func() bool { return e.q.Server.Stats().ConnectedClients == 0 })
}

// TestAuth_Reload: Server.Reload swaps users and rights without dropping connections; a disabled
// user's connection is closed (a blocked one too), a changed password applies to new logins, rights
// changes apply to the next command.
func TestAuth_Reload(t *testing.T) {
	e := startAuth(t)
	ctx := context.Background()
	w := e.client(t, 3, "worker", pwWorker)
	p := e.client(t, 2, "producer", pwProducer)
	a := e.client(t, 3, "admin", pwAdmin)
	for _, c := range []*redis.Client{w, p, a} {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	blocked, brd := dialRaw(t, e.q.Addr)
	send(t, blocked, "AUTH worker "+pwWorker+"\r\nBLPOP email_wait 0\r\n")
	expect(t, brd, "+OK\r\n")
	e2eEventually(t, "the worker blocked", func() bool { return e2eInfoValue(a.Info(ctx, "clients").Val(), "blocked_clients") == "1" })

	cfg := e.cfg
	cfg.Users = authUsers(t)
	off := false
	cfg.Users[2].Enabled = &off                                 // worker disabled
	cfg.Users[1].Push = []string{"sms_*"}                       // producer's rights change
	cfg.Users[3].PasswordHash = authHash(t, "admin-new-Secret") // admin's password changes
	if err := e.q.Server.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	expectEOF(t, brd) // the blocked worker is closed at once
	if err := w.Do(ctx, "LLEN", "email_q").Err(); err == nil {
		t.Fatal("disabled worker's command succeeded")
	}
	if got := e2eAuthErr(e.client(t, 3, "worker", pwWorker).Ping(ctx).Err()); !strings.HasPrefix(got, "WRONGPASS") {
		t.Fatalf("disabled worker login: %q", got)
	}
	if got := e2eAuthErr(p.RPush(ctx, "email_q", "x").Err()); got != "NOPERM user 'producer' has no 'push' right on queue 'email_q'" {
		t.Fatalf("producer after reload: %q", got)
	}
	if err := p.RPush(ctx, "sms_q", "x").Err(); err != nil {
		t.Fatalf("producer's new right: %v", err)
	}
	if err := a.Ping(ctx).Err(); err != nil { // the password change does not drop the admin
		t.Fatalf("admin connection after reload: %v", err)
	}
	if got := e2eAuthErr(e.client(t, 3, "admin", pwAdmin).Ping(ctx).Err()); !strings.HasPrefix(got, "WRONGPASS") {
		t.Fatalf("old admin password after reload: %q", got)
	}
	if err := e.client(t, 3, "admin", "admin-new-Secret").Ping(ctx).Err(); err != nil {
		t.Fatalf("new admin password: %v", err)
	}
	if n := e.redis.Client(t).LLen(ctx, "email_wait").Val(); n != 0 {
		t.Fatalf("email_wait has %d items", n)
	}
	if !strings.Contains(e.q.Logs.String(), "user disabled") {
		t.Errorf("closing not logged:\n%s", e.q.Logs.String())
	}
	// A bad config is refused and changes nothing.
	bad := cfg
	bad.Users = append([]auth.UserConfig{}, cfg.Users...)
	bad.Users[0].PasswordHash = "nope"
	if err := e.q.Server.Reload(bad); err == nil || !strings.Contains(err.Error(), "users[0].password_hash") {
		t.Fatalf("Reload(bad) = %v", err)
	}
	if err := p.RPush(ctx, "sms_q", "y").Err(); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
}

// TestAuth_ReloadSubscribeRightsAndOpenMode: a subscriber whose subscribe rights change is closed (as
// Redis does on an ACL change); turning authentication on closes the connections accepted while open.
func TestAuth_ReloadSubscribeRightsAndOpenMode(t *testing.T) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	open, ord := dialRaw(t, q.Addr)
	send(t, open, "PING\r\n")
	expect(t, ord, "+PONG\r\n")
	cfg.Users = authUsers(t)
	if err := q.Server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, ord)
	sub, srd := dialRaw(t, q.Addr)
	send(t, sub, "AUTH worker "+pwWorker+"\r\nSUBSCRIBE alerts\r\n")
	expect(t, srd, "+OK\r\n*3\r\n$9\r\nsubscribe\r\n$6\r\nalerts\r\n:1\r\n")
	idle, ird := dialRaw(t, q.Addr)
	send(t, idle, "AUTH worker "+pwWorker+"\r\n")
	expect(t, ird, "+OK\r\n")
	cfg.Users = authUsers(t)
	cfg.Users[2].Subscribe = []string{"events.*"}
	if err := q.Server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, srd)
	send(t, idle, "PING\r\n")
	expect(t, ird, "+PONG\r\n")
}
