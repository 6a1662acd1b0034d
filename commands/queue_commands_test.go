package commands_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
)

// Queue rules applied by the handlers (README "Queue and channel rules", "Envelope"): envelopes and
// what each connection receives from them, validation with its exact error texts, dedup, and the
// backend's size limit.

// bulkBody returns the payload of a bulk string reply.
func bulkBody(t *testing.T, reply string) string {
	t.Helper()
	i := strings.Index(reply, "\r\n")
	if !strings.HasPrefix(reply, "$") || i < 0 || !strings.HasSuffix(reply, "\r\n") {
		t.Fatalf("not a bulk string: %q", reply)
	}
	return reply[i+2 : len(reply)-2]
}

func TestEnvelope_StoredAndDeliveredPerRule(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: []policy.Rule{
		{Match: "raw*", Envelope: new(bool)},
		{Match: "full*", Deliver: "envelope"},
	}})
	c := s.Conn(t)
	send(t, c, "AUTH", "alice", "x") // no users: names the producer
	ctx := context.Background()

	// Default rule: stored in an envelope, delivered and peeked as the payload.
	expect(t, send(t, c, "RPUSH", "jobs", `{"n":1}`, "text", "\xff"), ":3\r\n")
	stored := s.Client.LRange(ctx, "jobs", 0, -1).Val()
	for i, want := range []string{`{"n":1}`, "text", "\xff"} {
		env, ok := envelope.Decode([]byte(stored[i]))
		if !ok || string(env.Payload) != want || env.Queue != "jobs" || env.Producer != "alice" || env.Attempts != 0 {
			t.Fatalf("stored item %d: %q", i, stored[i])
		}
	}
	expect(t, send(t, c, "LRANGE", "jobs", "0", "-1"), "*3\r\n"+bulk(`{"n":1}`)+bulk("text")+bulk("\xff"))
	expect(t, send(t, c, "LPOP", "jobs"), bulk(`{"n":1}`))

	// QDELIVERY envelope: the envelope as stored (LRANGE and pops alike).
	send(t, c, "QDELIVERY", "envelope")
	expect(t, send(t, c, "LRANGE", "jobs", "0", "0"), "*1\r\n"+bulk(stored[1]))
	expect(t, send(t, c, "LPOP", "jobs"), bulk(stored[1]))
	send(t, c, "QDELIVERY", "default")

	// envelope: false stores the value as it is; there is no envelope to deliver.
	expect(t, send(t, c, "RPUSH", "rawq", "v"), ":1\r\n")
	if got := s.Client.LIndex(ctx, "rawq", 0).Val(); got != "v" {
		t.Fatalf("raw queue stores %q", got)
	}
	send(t, c, "QDELIVERY", "envelope")
	expect(t, send(t, c, "LPOP", "rawq"), bulk("v"))
	send(t, c, "QDELIVERY", "default")

	// deliver: envelope delivers envelopes unless the connection asks for payloads.
	send(t, c, "RPUSH", "fullq", "p1", "p2")
	if env, ok := envelope.Decode([]byte(bulkBody(t, send(t, c, "LPOP", "fullq")))); !ok || string(env.Payload) != "p1" {
		t.Fatal("deliver: envelope did not deliver the envelope")
	}
	send(t, c, "QDELIVERY", "payload")
	expect(t, send(t, c, "LPOP", "fullq"), bulk("p2"))

	// Items pushed into Redis behind qgate's back are not envelopes: delivered as they are.
	s.Client.RPush(ctx, "jobs2", "plain")
	expect(t, send(t, c, "LPOP", "jobs2"), bulk("plain"))
}

func TestValidation_RejectionTexts(t *testing.T) {
	dir := t.TempDir()
	schema := `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":["receiver"],` +
		`"properties":{"receiver":{"type":"string"}}}`
	if err := os.WriteFile(filepath.Join(dir, "email.json"), []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, commandstest.Options{SchemaDir: dir, Queues: []policy.Rule{
		{Match: "email*", Format: "json", Schema: "email.json"},
		{Match: "small*", MaxBytes: 4},
		{Match: "json*", Format: "json"},
	}})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"RPUSH", "emailq", `{"receiver":"a@b"}`}, ":1\r\n"},
		{[]string{"RPUSH", "emailq", `{"content":"hi"}`},
			errR(`ERR value 1 of 1 rejected by queues[0] "email*": schema email.json: /receiver: missing property`)},
		{[]string{"RPUSH", "emailq", `{"receiver":"a@b"}`, `{"receiver":5}`},
			errR(`ERR value 2 of 2 rejected by queues[0] "email*": schema email.json: /receiver: got number, want string`)},
		{[]string{"LPUSH", "smallq", "1234", "12345"}, errR(`ERR value 2 of 2 rejected by queues[1] "small*": value is 5 bytes, queue limit 4`)},
		{[]string{"RPUSH", "jsonq", "{"}, errR(`ERR value 1 of 1 rejected by queues[2] "json*": not JSON at offset 1: unexpected end of input`)},
		{[]string{"RPUSH", "jsonq", "1 2"}, errR(`ERR value 1 of 1 rejected by queues[2] "json*": not JSON at offset 2: data after the value`)},
		{[]string{"RPUSH", "jsonq", "{\"a\":\r\n}"}, errR(`ERR value 1 of 1 rejected by queues[2] "json*": not JSON at offset 7: invalid character '}' looking for beginning of value`)},
		// All or nothing: nothing of a refused push is stored.
		{[]string{"LLEN", "emailq"}, ":1\r\n"},
		{[]string{"LLEN", "smallq"}, ":0\r\n"},
	})
}

// A value whose stored form (envelope included) is over the backend's proto-max-bulk-len is refused
// before it is sent.
func TestValidation_TooLargeForTheBackend(t *testing.T) {
	s := newServer(t, commandstest.Options{MaxBulk: 100, Queues: rawRules})
	c := s.Conn(t)
	v := strings.Repeat("x", 101)
	run(t, c, cases{
		{[]string{"RPUSH", "rawq", "ok", v}, errR("ERR value 2 of 2 is too large for the backend: 101 bytes stored (envelope included), over its proto-max-bulk-len of 100")},
		{[]string{"RPUSH", "rawq", strings.Repeat("x", 100)}, ":1\r\n"},
	})
	got := send(t, c, "RPUSH", "jobs", strings.Repeat("x", 50)) // the envelope takes it over 100
	if !strings.HasPrefix(got, "-ERR value 1 of 1 is too large for the backend: ") || !strings.HasSuffix(got, " bytes stored (envelope included), over its proto-max-bulk-len of 100\r\n") {
		t.Fatalf("enveloped push = %q", got)
	}
}

func TestDedup_DuplicatesAreAcknowledgedNotQueued(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: []policy.Rule{
		{Match: "body*", Dedup: policy.Dedup{Key: "body", Window: time.Minute}},
		{Match: "order*", Format: "json", Dedup: policy.Dedup{Key: "/id"}},
	}})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"RPUSH", "bodyq", "a", "b"}, ":2\r\n"},
		{[]string{"RPUSH", "bodyq", "a"}, ":2\r\n"}, // the list length, as for a plain push
		{[]string{"LPUSH", "bodyq", "c", "a", "c"}, ":3\r\n"},
		{[]string{"LRANGE", "bodyq", "0", "-1"}, "*3\r\n" + bulk("c") + bulk("a") + bulk("b")},
		{[]string{"RPUSH", "orderq", `{"id":1,"v":"x"}`, `{"id":2}`}, ":2\r\n"},
		{[]string{"RPUSH", "orderq", `{"id":1,"v":"y"}`}, ":2\r\n"},
		{[]string{"RPUSH", "orderq", `{"v":"y"}`}, errR(`ERR value 1 of 1 rejected by queues[1] "order*": dedup key /id: missing`)},
		{[]string{"LLEN", "orderq"}, ":2\r\n"},
	})
	// Popping does not forget the key within the window.
	send(t, c, "LPOP", "bodyq", "3")
	expect(t, send(t, c, "RPUSH", "bodyq", "a"), ":0\r\n")
}

// A backend error reply passes through verbatim; a transport failure is reported without detail
// beyond the failure (a push's says whether it may have been applied).
func TestBackend_Errors(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	s.MR.SetError("LOADING Redis is loading the dataset in memory")
	loading := errR("LOADING Redis is loading the dataset in memory")
	run(t, c, cases{
		{[]string{"LLEN", "rawq"}, loading},
		{[]string{"RPUSH", "rawq", "a"}, loading},
		{[]string{"LPOP", "rawq"}, loading},
		{[]string{"LRANGE", "rawq", "0", "1"}, loading},
		{[]string{"PUBLISH", "rawch", "m"}, loading},
		{[]string{"PUBSUB", "NUMPAT"}, loading},
	})
	s.MR.SetError("")
	expect(t, send(t, c, "RPUSH", "rawq", "a"), ":1\r\n")
	s.MR.Close()
	for _, args := range [][]string{{"LLEN", "rawq"}, {"RPUSH", "rawq", "b"}} {
		got := send(t, c, args...)
		if !strings.HasPrefix(got, "-ERR backend unavailable") || strings.Count(got, "\r\n") != 1 {
			t.Errorf("%s with the backend down = %q", args[0], got)
		}
	}
}
