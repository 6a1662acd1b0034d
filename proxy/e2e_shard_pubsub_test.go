package proxy_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// Sharded pub/sub (README "Pub/sub"), byte for byte against redis-server 7.0: the cases of Redis
// 7.0.15's tests/unit/pubsubshard.tcl that apply to one server, plus the RESP2 subscribed-state rules,
// RESP3 pushes, RESET and argument errors.

// sframe is an ssubscribe/sunsubscribe/smessage frame in the protocol of head ("*" or ">").
func sframe(head, kind, channel string, last string) string {
	return head + "3\r\n" + bulk(kind) + bulk(channel) + last
}

func ssub(head, channel string, n int) string {
	return sframe(head, "ssubscribe", channel, ":"+strconv.Itoa(n)+"\r\n")
}

func sunsub(head, channel string, n int) string {
	return sframe(head, "sunsubscribe", channel, ":"+strconv.Itoa(n)+"\r\n")
}

func smsg(head, channel, payload string) string {
	return sframe(head, "smessage", channel, bulk(payload))
}

// TestShardPubSub_Basics ports "SPUBLISH/SSUBSCRIBE basics", "... with two clients", "... after
// UNSUBSCRIBE without arguments", "SSUBSCRIBE to one channel more than once" and "SUNSUBSCRIBE from
// non-subscribed channels", in RESP2 and RESP3.
func TestShardPubSub_Basics(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		for _, proto := range []int{2, 3} {
			t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
				h := pushHead(proto)
				sub, rd := dialRaw(t, tg.addr)
				sub2, rd2 := dialRaw(t, tg.addr)
				pub, prd := dialRaw(t, tg.addr)
				if proto == 3 {
					send(t, sub, "HELLO 3\r\n")
					expectHello(t, rd, 3, tg.version)
					send(t, sub2, "HELLO 3\r\n")
					expectHello(t, rd2, 3, tg.version)
				}
				send(t, sub, "SSUBSCRIBE chan1\r\n")
				expect(t, rd, ssub(h, "chan1", 1))
				send(t, sub, "SSUBSCRIBE chan2\r\n")
				expect(t, rd, ssub(h, "chan2", 2))
				send(t, pub, "SPUBLISH chan1 hello\r\nSPUBLISH chan2 world\r\n")
				expect(t, prd, ":1\r\n:1\r\n")
				expect(t, rd, smsg(h, "chan1", "hello")+smsg(h, "chan2", "world"))

				send(t, sub, "SUNSUBSCRIBE chan1\r\n")
				expect(t, rd, sunsub(h, "chan1", 1))
				send(t, pub, "SPUBLISH chan1 hello\r\nSPUBLISH chan2 world\r\n")
				expect(t, prd, ":0\r\n:1\r\n")
				expect(t, rd, smsg(h, "chan2", "world"))
				send(t, sub, "SUNSUBSCRIBE chan2\r\n")
				expect(t, rd, sunsub(h, "chan2", 0))
				send(t, pub, "SPUBLISH chan1 hello\r\nSPUBLISH chan2 world\r\n")
				expect(t, prd, ":0\r\n:0\r\n")

				// Two clients on one channel.
				send(t, sub, "SSUBSCRIBE chan1\r\n")
				expect(t, rd, ssub(h, "chan1", 1))
				send(t, sub2, "SSUBSCRIBE chan1\r\n")
				expect(t, rd2, ssub(h, "chan1", 1))
				send(t, pub, "SPUBLISH chan1 hello\r\n")
				expect(t, prd, ":2\r\n")
				expect(t, rd, smsg(h, "chan1", "hello"))
				expect(t, rd2, smsg(h, "chan1", "hello"))
				send(t, pub, "PUBSUB SHARDNUMSUB chan1 chan2\r\nPUBSUB SHARDCHANNELS\r\nPUBSUB SHARDCHANNELS ch*1\r\nPUBSUB SHARDCHANNELS x*\r\n")
				expect(t, prd, "*4\r\n$5\r\nchan1\r\n:2\r\n$5\r\nchan2\r\n:0\r\n*1\r\n$5\r\nchan1\r\n*1\r\n$5\r\nchan1\r\n*0\r\n")
				send(t, sub2, "SUNSUBSCRIBE\r\n")
				expect(t, rd2, sunsub(h, "chan1", 0))
				send(t, pub, "PUBSUB SHARDNUMSUB chan1\r\n")
				expect(t, prd, "*2\r\n$5\r\nchan1\r\n:1\r\n")

				// SUNSUBSCRIBE without arguments drops them all (listed one at a time here: Redis lists
				// several in its hash order).
				send(t, sub, "SSUBSCRIBE chan2\r\nSSUBSCRIBE chan3\r\n")
				expect(t, rd, ssub(h, "chan2", 2)+ssub(h, "chan3", 3))
				send(t, sub, "SUNSUBSCRIBE chan1 chan2\r\n")
				expect(t, rd, sunsub(h, "chan1", 2)+sunsub(h, "chan2", 1))
				send(t, sub, "SUNSUBSCRIBE\r\n")
				expect(t, rd, sunsub(h, "chan3", 0))
				send(t, pub, "SPUBLISH chan1 hello\r\nSPUBLISH chan2 hello\r\nSPUBLISH chan3 hello\r\n")
				expect(t, prd, ":0\r\n:0\r\n:0\r\n")
				send(t, sub, "SUNSUBSCRIBE\r\n")
				if proto == 3 {
					expect(t, rd, ">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n")
				} else {
					expect(t, rd, "*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n")
				}

				// One channel more than once; channels never subscribed.
				send(t, sub, "SSUBSCRIBE chan1 chan1 chan1\r\n")
				expect(t, rd, ssub(h, "chan1", 1)+ssub(h, "chan1", 1)+ssub(h, "chan1", 1))
				send(t, pub, "SPUBLISH chan1 hello\r\n")
				expect(t, prd, ":1\r\n")
				expect(t, rd, smsg(h, "chan1", "hello"))
				send(t, sub, "SUNSUBSCRIBE chan1\r\n")
				expect(t, rd, sunsub(h, "chan1", 0))
				send(t, sub, "SUNSUBSCRIBE foo\r\nSUNSUBSCRIBE bar quux\r\n")
				expect(t, rd, sunsub(h, "foo", 0)+sunsub(h, "bar", 0)+sunsub(h, "quux", 0))
				send(t, pub, "PUBSUB SHARDNUMSUB abc def\r\nPUBSUB SHARDNUMSUB\r\nPUBSUB SHARDCHANNELS\r\n")
				expect(t, prd, "*4\r\n$3\r\nabc\r\n:0\r\n$3\r\ndef\r\n:0\r\n*0\r\n*0\r\n")
				expectAlive(t, sub, rd)
			})
		}
	})
}

// TestShardPubSub_WithPublishSubscribe ports "SPUBLISH/SSUBSCRIBE with PUBLISH/SUBSCRIBE": the two
// kinds of channel are separate, and their counts too.
func TestShardPubSub_WithPublishSubscribe(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		s1, r1 := dialRaw(t, tg.addr)
		s2, r2 := dialRaw(t, tg.addr)
		pub, prd := dialRaw(t, tg.addr)
		send(t, s1, "SSUBSCRIBE chan1\r\n")
		expect(t, r1, ssub("*", "chan1", 1))
		send(t, s2, "SUBSCRIBE chan1\r\n")
		expect(t, r2, "*3\r\n$9\r\nsubscribe\r\n$5\r\nchan1\r\n:1\r\n")
		send(t, pub, "SPUBLISH chan1 hello\r\nPUBLISH chan1 hello\r\n")
		expect(t, prd, ":1\r\n:1\r\n")
		expect(t, r1, smsg("*", "chan1", "hello"))
		expect(t, r2, "*3\r\n$7\r\nmessage\r\n$5\r\nchan1\r\n$5\r\nhello\r\n")
		send(t, pub, "PUBSUB SHARDNUMSUB chan1\r\nPUBSUB NUMSUB chan1\r\nPUBSUB SHARDCHANNELS\r\nPUBSUB CHANNELS\r\n")
		expect(t, prd, "*2\r\n$5\r\nchan1\r\n:1\r\n*2\r\n$5\r\nchan1\r\n:1\r\n*1\r\n$5\r\nchan1\r\n*1\r\n$5\r\nchan1\r\n")
		// A pattern matches channels, never shard channels.
		send(t, s2, "PSUBSCRIBE ch*\r\n")
		expect(t, r2, "*3\r\n$10\r\npsubscribe\r\n$3\r\nch*\r\n:2\r\n")
		send(t, pub, "SPUBLISH chan1 x\r\n")
		expect(t, prd, ":1\r\n")
		expect(t, r1, smsg("*", "chan1", "x"))
		send(t, s2, "PING\r\n")
		expect(t, r2, "*2\r\n$4\r\npong\r\n$0\r\n\r\n")
	})
}

// TestShardPubSub_SubscribedStateRESP2: shard channels put a RESP2 connection in subscribed state,
// SSUBSCRIBE and the other (P|S)(UN)SUBSCRIBE run there, the counts of (P)(UN)SUBSCRIBE replies leave
// shard channels out and those of S(UN)SUBSCRIBE count only them, and the state ends when nothing of
// any kind is left (or with RESET).
func TestShardPubSub_SubscribedStateRESP2(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		notAllowed := func(name string) string {
			return "-ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
		}
		send(t, c, "SSUBSCRIBE a\r\n")
		expect(t, rd, ssub("*", "a", 1))
		for cmd, name := range map[string]string{"LPOP q": "lpop", "SPUBLISH a x": "spublish", "PUBLISH a x": "publish",
			"PUBSUB SHARDNUMSUB a": "pubsub|shardnumsub", "PUBSUB SHARDCHANNELS": "pubsub|shardchannels"} {
			send(t, c, cmd+"\r\n")
			expect(t, rd, notAllowed(name))
		}
		send(t, c, "SPUBLISH a\r\n")
		expect(t, rd, "-ERR wrong number of arguments for 'spublish' command\r\n")
		send(t, c, "PING\r\n")
		expect(t, rd, "*2\r\n$4\r\npong\r\n$0\r\n\r\n")

		send(t, c, "SUBSCRIBE b\r\nPSUBSCRIBE p*\r\nSSUBSCRIBE c\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:2\r\n"+ssub("*", "c", 2))
		send(t, c, "UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n")
		// Still subscribed: the shard channels are left.
		send(t, c, "UNSUBSCRIBE\r\nLPOP q\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"+notAllowed("lpop"))
		send(t, c, "SUNSUBSCRIBE a\r\nLPOP q\r\n")
		expect(t, rd, sunsub("*", "a", 1)+notAllowed("lpop"))
		send(t, c, "SUBSCRIBE b\r\nSUNSUBSCRIBE c\r\nLPOP q\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n"+sunsub("*", "c", 0)+notAllowed("lpop"))
		send(t, c, "UNSUBSCRIBE b\r\nLPOP q\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n$-1\r\n")

		// RESET leaves the subscribed state and drops the shard channels.
		pub, prd := dialRaw(t, tg.addr)
		send(t, c, "SSUBSCRIBE r\r\nRESET\r\nLPOP q\r\n")
		expect(t, rd, ssub("*", "r", 1)+"+RESET\r\n$-1\r\n")
		send(t, pub, "SPUBLISH r x\r\n")
		expect(t, prd, ":0\r\n")
		send(t, c, "SUNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n")
	})
}

// TestShardPubSub_RESP3: no subscribed-state restriction, pushes, and a client subscribed to the
// channel it SPUBLISHes to gets the message before the reply, pipelined too.
func TestShardPubSub_RESP3(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "HELLO 3\r\n")
		expectHello(t, rd, 3, tg.version)
		send(t, c, "SSUBSCRIBE own\r\nRPUSH q v\r\nLPOP q\r\n")
		expect(t, rd, ssub(">", "own", 1)+":1\r\n$1\r\nv\r\n")
		send(t, c, "SPUBLISH own hi\r\n")
		expect(t, rd, smsg(">", "own", "hi")+":1\r\n")
		send(t, c, "SPUBLISH own a\r\nSPUBLISH other b\r\nSPUBLISH own c\r\nPING\r\n")
		expect(t, rd, smsg(">", "own", "a")+":1\r\n:0\r\n"+smsg(">", "own", "c")+":1\r\n+PONG\r\n")
		send(t, c, "PUBSUB SHARDNUMSUB own\r\nPUBSUB SHARDCHANNELS o*\r\n")
		expect(t, rd, "*2\r\n$3\r\nown\r\n:1\r\n*1\r\n$3\r\nown\r\n")
		send(t, c, "SUNSUBSCRIBE own\r\nSPUBLISH own d\r\n")
		expect(t, rd, sunsub(">", "own", 0)+":0\r\n")
		expectAlive(t, c, rd)
	})
}

// TestShardPubSub_ArgumentErrors: arity, subcommand and HELP replies.
func TestShardPubSub_ArgumentErrors(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		for cmd, name := range map[string]string{"SSUBSCRIBE": "ssubscribe", "SPUBLISH": "spublish", "SPUBLISH a": "spublish",
			"SPUBLISH a b c": "spublish"} {
			send(t, c, cmd+"\r\n")
			expect(t, rd, "-ERR wrong number of arguments for '"+name+"' command\r\n")
		}
		send(t, c, "PUBSUB SHARDCHANNELS a b\r\npubsub channels a b\r\npubsub shardchannels\r\n")
		expect(t, rd, "-ERR unknown subcommand or wrong number of arguments for 'SHARDCHANNELS'. Try PUBSUB HELP.\r\n"+
			"-ERR unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP.\r\n*0\r\n")
		send(t, c, "PUBSUB SHARDNUMSUB\r\nPUBSUB SHARDNUMSUBX\r\n")
		expect(t, rd, "*0\r\n-ERR unknown subcommand 'SHARDNUMSUBX'. Try PUBSUB HELP.\r\n")
		send(t, c, "PUBSUB HELP\r\n")
		expect(t, rd, "*14\r\n+PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n")
		for i := 0; i < 10; i++ {
			_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
			if _, err := rd.br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		expect(t, rd, "+    Return the number of subscribers for the specified shard level channel(s)\r\n+HELP\r\n+    Prints this help.\r\n")
		expectAlive(t, c, rd)
	})
}

// TestShardPubSub_InvalidNameAndRules: shard channels follow the channel rules of PUBLISH and
// SUBSCRIBE: name validation, message checks, and envelopes that qgate's subscribers never see but a
// subscriber on Redis itself does.
func TestShardPubSub_InvalidNameAndRules(t *testing.T) {
	q, direct := startWithRules(t, nil, []policy.Rule{{Match: "events.*", Format: "json", MaxBytes: 64}})
	c, rd := dialRaw(t, q.Addr)
	send(t, c, "SSUBSCRIBE ok bad*name\r\nSPUBLISH bad*name x\r\n")
	const invalid = `-ERR invalid channel name "bad*name": use printable ASCII without spaces, quotes, backslashes or * ? [ ]` + "\r\n"
	expect(t, rd, invalid+invalid)
	send(t, c, "SSUBSCRIBE events.signup\r\n")
	expect(t, rd, ssub("*", "events.signup", 1))

	ctx := e2eCtx(t)
	raw := direct.SSubscribe(ctx, "events.signup")
	defer raw.Close()
	if _, err := raw.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	pub := q.Client(t)
	if err := pub.SPublish(ctx, "events.signup", "not json").Err(); err == nil || !strings.Contains(err.Error(), `rejected by channels[0] "events.*": not JSON at offset 1`) {
		t.Fatalf("bad message: %v", err)
	}
	if n, err := pub.SPublish(ctx, "events.signup", `{"user":7}`).Result(); err != nil || n != 2 {
		t.Fatalf("SPUBLISH = %d, %v; want 2 (qgate's subscriber and the direct one)", n, err)
	}
	expect(t, rd, smsg("*", "events.signup", `{"user":7}`))
	rm, err := raw.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := envelope.Decode([]byte(rm.Payload)); !ok || string(e.Payload) != `{"user":7}` || e.Queue != "events.signup" {
		t.Fatalf("a subscriber on Redis itself sees the envelope; got %q", rm.Payload)
	}
	// QDELIVERY envelope: the subscriber gets the envelope too.
	send(t, c, "QDELIVERY envelope\r\n")
	expect(t, rd, "+OK\r\n")
	if err := pub.SPublish(ctx, "events.signup", `{"user":8}`).Err(); err != nil {
		t.Fatal(err)
	}
	expect(t, rd, "*3\r\n$8\r\nsmessage\r\n$13\r\nevents.signup\r\n$")
	line, _ := rd.br.ReadString('\n')
	n, _ := strconv.Atoi(strings.TrimSpace(line))
	body := make([]byte, n+2)
	if _, err := rd.br.Read(body); err != nil {
		t.Fatal(err)
	}
	if e, ok := envelope.Decode(body[:n]); !ok || string(e.Payload) != `{"user":8}` {
		t.Fatalf("QDELIVERY envelope: got %q", body)
	}
}

// TestShardPubSub_Rights: SSUBSCRIBE needs the subscribe right and SPUBLISH the publish right on the
// channel, as SUBSCRIBE and PUBLISH.
func TestShardPubSub_Rights(t *testing.T) {
	e := startAuth(t)
	w, wrd := dialRaw(t, e.q.Addr)
	send(t, w, "AUTH worker "+pwWorker+"\r\nSSUBSCRIBE events.a sms\r\nPING\r\nSSUBSCRIBE events.a alerts\r\nSPUBLISH events.a x\r\n")
	expect(t, wrd, "+OK\r\n-NOPERM user 'worker' has no 'subscribe' right on channel 'sms'\r\n+PONG\r\n"+
		ssub("*", "events.a", 1)+ssub("*", "alerts", 2)+
		"-NOPERM user 'worker' has no 'publish' right on channel 'events.a'\r\n")
	p, prd := dialRaw(t, e.q.Addr)
	send(t, p, "AUTH producer "+pwProducer+"\r\nSPUBLISH alerts x\r\nSSUBSCRIBE events.a\r\nSPUBLISH events.a hello\r\n")
	expect(t, prd, "+OK\r\n-NOPERM user 'producer' has no 'publish' right on channel 'alerts'\r\n"+
		"-NOPERM user 'producer' has no 'subscribe' right on channel 'events.a'\r\n:1\r\n")
	expect(t, wrd, smsg("*", "events.a", "hello"))
	send(t, p, "SUNSUBSCRIBE\r\n") // no right needed: it only drops what the client has
	expect(t, prd, "*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n")
}

// TestShardPubSub_Cluster: on a 3-master Cluster, SSUBSCRIBErs through qgate on hash-tagged channels
// in slots of different nodes get what SPUBLISH sends, through qgate and straight to the slot's node;
// counts and SHARDNUMSUB come from each channel's node.
func TestShardPubSub_Cluster(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	cfg := proxytest.ClusterConfig(addrs)
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = direct.Close() })

	// Channels whose slots are on three different nodes.
	var channels []string
	owners := map[string]bool{}
	for i := 0; len(channels) < 3 && i < 1000; i++ {
		ch := "ev{" + strconv.Itoa(i) + "}"
		slot := int64(rdb.Slot(ch))
		cn, err := direct.MasterForKey(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		addr := cn.Options().Addr
		if owners[addr] {
			continue
		}
		if got, err := direct.ClusterKeySlot(ctx, ch).Result(); err != nil || got != slot {
			t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; rdb.Slot says %d", ch, got, err, slot)
		}
		owners[addr] = true
		channels = append(channels, ch)
	}
	if len(channels) != 3 {
		t.Fatalf("found channels on %d nodes, want 3", len(channels))
	}

	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			sub := q.Client(t, func(o *redis.Options) { o.Protocol = proto })
			ps := sub.SSubscribe(ctx, channels...)
			defer ps.Close()
			for range channels {
				if _, err := ps.Receive(ctx); err != nil {
					t.Fatal(err)
				}
			}
			pub := q.Client(t, func(o *redis.Options) { o.Protocol = proto })
			for i, ch := range channels {
				msg := "m" + strconv.Itoa(i)
				if n, err := pub.SPublish(ctx, ch, msg).Result(); err != nil || n != 1 {
					t.Fatalf("SPUBLISH %s through qgate = %d, %v; want 1", ch, n, err)
				}
				if got, err := ps.ReceiveMessage(ctx); err != nil || got.Channel != ch || got.Payload != msg {
					t.Fatalf("message = %+v, %v; want %s on %s", got, err, msg, ch)
				}
				// Straight to the slot's node: a non-envelope message goes out as it is.
				if n, err := direct.SPublish(ctx, ch, "raw").Result(); err != nil || n != 1 {
					t.Fatalf("SPUBLISH %s to the node = %d, %v; want 1 (qgate's one subscription)", ch, n, err)
				}
				if got, err := ps.ReceiveMessage(ctx); err != nil || got.Channel != ch || got.Payload != "raw" {
					t.Fatalf("message = %+v, %v; want raw on %s", got, err, ch)
				}
			}
			counts, err := pub.PubSubShardNumSub(ctx, channels...).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range channels {
				if got, want := counts[ch], int64(1); got != want {
					t.Fatalf("SHARDNUMSUB %s = %d, want %d", ch, got, want)
				}
			}
			if err := ps.SUnsubscribe(ctx, channels...); err != nil {
				t.Fatal(err)
			}
			// qgate's backend subscriptions end with the last local subscriber.
			deadline := time.Now().Add(10 * time.Second)
			for _, ch := range channels {
				for {
					m, err := direct.PubSubShardNumSub(ctx, ch).Result()
					if err == nil && m[ch] == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("SHARDNUMSUB %s on its node = %v, %v after the last SUNSUBSCRIBE", ch, m, err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}

// TestShardPubSub_ClusterSlotMove: when a shard channel's slot moves to another node, the old node
// drops its subscribers (Redis sends them sunsubscribe); qgate subscribes again on the slot's new
// owner, and its client, which never saw the move, goes on getting the channel's messages.
func TestShardPubSub_ClusterSlotMove(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	cfg := proxytest.ClusterConfig(addrs)
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = direct.Close() })

	const ch, ch2 = "moving{m}", "also{m}" // one slot: its connection carries both
	slot := int(rdb.Slot(ch))
	src, err := direct.MasterForKey(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*redis.Client{}
	ids := map[string]string{}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		t.Cleanup(func() { _ = c.Close() })
		id, err := c.Do(ctx, "cluster", "myid").Text()
		if err != nil {
			t.Fatal(err)
		}
		nodes[a], ids[a] = c, id
	}
	srcAddr := src.Options().Addr
	var dstAddr string
	for _, a := range addrs {
		if a != srcAddr {
			dstAddr = a
			break
		}
	}

	sub := q.Client(t)
	ps := sub.SSubscribe(ctx, ch, ch2)
	defer ps.Close()
	for range 2 {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub := q.Client(t)
	if n, err := pub.SPublish(ctx, ch, "before").Result(); err != nil || n != 1 {
		t.Fatalf("SPUBLISH before the move = %d, %v", n, err)
	}
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "before" {
		t.Fatalf("message = %+v, %v", m, err)
	}

	// Move the (keyless) slot: importing on the destination, migrating on the source, then assigned to
	// the destination everywhere.
	must := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	must(nodes[dstAddr], "cluster", "setslot", slot, "importing", ids[srcAddr])
	must(nodes[srcAddr], "cluster", "setslot", slot, "migrating", ids[dstAddr])
	must(nodes[dstAddr], "cluster", "setslot", slot, "node", ids[dstAddr])
	must(nodes[srcAddr], "cluster", "setslot", slot, "node", ids[dstAddr])
	for _, a := range addrs {
		if a != srcAddr && a != dstAddr {
			must(nodes[a], "cluster", "setslot", slot, "node", ids[dstAddr])
		}
	}

	// qgate's subscription comes back on the destination: SPUBLISH there reaches the client.
	moved := time.Now()
	deadline := moved.Add(15 * time.Second)
	for i := 0; ; i++ {
		n, err := nodes[dstAddr].SPublish(ctx, ch, "after").Result()
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SPUBLISH on the slot's new node = %d, %v: qgate did not subscribe there", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("subscribed on the new owner %v after the slot move", time.Since(moved).Round(time.Millisecond))
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Channel != ch || m.Payload != "after" {
		t.Fatalf("message after the move = %+v, %v", m, err)
	}
	for _, c := range []string{ch, ch2} {
		if n, err := pub.SPublish(ctx, c, "through").Result(); err != nil || n != 1 {
			t.Fatalf("SPUBLISH %s through qgate after the move = %d, %v; want 1", c, n, err)
		}
		if m, err := ps.ReceiveMessage(ctx); err != nil || m.Channel != c || m.Payload != "through" {
			t.Fatalf("message = %+v, %v; want through on %s", m, err, c)
		}
	}
	if n, err := nodes[srcAddr].Do(ctx, "pubsub", "shardnumsub", ch).Slice(); err != nil || n[1] != int64(0) {
		t.Fatalf("SHARDNUMSUB on the old node = %v, %v; want 0", n, err)
	}
}

// TestShardPubSub_BackendWithoutShardedPubSub: a backend that refuses SSUBSCRIBE (the embedded
// miniredis) gets its error to the client at once, not after the confirmation timeout, and the
// connection stays out of subscribed state.
func TestShardPubSub_BackendWithoutShardedPubSub(t *testing.T) {
	cfg := proxy.DefaultConfig()
	cfg.Backend = ""
	q := proxytest.StartQgate(t, cfg)
	c, rd := dialRaw(t, q.Addr)
	start := time.Now()
	send(t, c, "SSUBSCRIBE a\r\n")
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	line, err := rd.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "-ERR ") || !strings.Contains(strings.ToLower(line), "ssubscribe") {
		t.Fatalf("SSUBSCRIBE on a backend without it = %q, %v; want its error", line, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the refusal took %v: it waited for the confirmation timeout", took)
	}
	send(t, c, "LPOP q\r\n")
	expect(t, rd, "$-1\r\n")
	t.Logf("refusal: %q", line)
}

// TestShardPubSub_SUnsubscribeRepliedBeforeSPublishNotCounted is
// TestRaw_UnsubscribeRepliedBeforePublishNotCounted for shard channels: the count of an SPUBLISH
// racing the last subscriber's SUNSUBSCRIBE equals the messages delivered, every time.
func TestShardPubSub_SUnsubscribeRepliedBeforeSPublishNotCounted(t *testing.T) {
	const tries = 50
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		a, ra := dialRaw(t, tg.addr)
		b, rb := dialRaw(t, tg.addr)
		p, rp := dialRaw(t, tg.addr)
		for i := 0; i < tries; i++ {
			send(t, a, "SSUBSCRIBE race\r\n")
			expect(t, ra, ssub("*", "race", 1))
			send(t, b, "SSUBSCRIBE race\r\n")
			expect(t, rb, ssub("*", "race", 1))
			send(t, a, "SUNSUBSCRIBE race\r\n")
			expect(t, ra, sunsub("*", "race", 0))

			send(t, b, "SUNSUBSCRIBE race\r\n")
			send(t, p, "SPUBLISH race m"+strconv.Itoa(i)+"\r\n")
			n := readInt(t, rp)
			got := 0
			expect(t, rb, "*3\r\n$")
			if next := peekByte(t, rb); next == '8' {
				expect(t, rb, "8\r\nsmessage\r\n$4\r\nrace\r\n"+bulk("m"+strconv.Itoa(i)))
				got = 1
				expect(t, rb, "*3\r\n$")
			}
			expect(t, rb, "12\r\nsunsubscribe\r\n$4\r\nrace\r\n:0\r\n")
			if got, want := n, got; got != want {
				t.Fatalf("try %d: SPUBLISH counted %d, but %d subscribers got the message", i, got, want)
			}
			send(t, a, "PING\r\n")
			expect(t, ra, "+PONG\r\n")
		}
	})
}

// TestShardPubSub_BackendRestartResubscribes: after the standalone backend restarts, go-redis
// reconnects qgate's shard connection and subscribes its channels again: the client, still
// subscribed, gets messages published after the restart.
func TestShardPubSub_BackendRestartResubscribes(t *testing.T) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	c, rd := dialRaw(t, q.Addr)
	send(t, c, "SSUBSCRIBE back\r\n")
	expect(t, rd, ssub("*", "back", 1))
	r.Restart(t)
	direct := r.Client(t)
	ctx := e2eCtx(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := direct.SPublish(ctx, "back", "again").Result()
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SPUBLISH after the restart = %d, %v: qgate did not subscribe again", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect(t, rd, smsg("*", "back", "again"))
}
