package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func off() *bool { b := false; return &b }

func testSet(t *testing.T) *Set {
	t.Helper()
	s, err := NewSet([]Rule{
		{Match: "email_*", Schema: "email.json", MaxBytes: 256},
		{Match: "json_*", Format: "json"},
		{Match: "legacy_*", Envelope: off()},
		{Match: "audit_*", Deliver: "envelope"},
		{Match: "orders", Format: "json", Dedup: Dedup{Key: "/order_id", Window: time.Minute}},
		{Match: "pings", Dedup: Dedup{Key: "body"}},
	}, []Rule{
		{Match: "events.*", Format: "json", MaxBytes: 100},
	}, "testdata")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSet_FirstMatchWinsThenDefault(t *testing.T) {
	s := testSet(t)
	for _, tc := range []struct {
		queue, want string
	}{
		{"email_queue", `queues[0] "email_*"`},
		{"json_x", `queues[1] "json_*"`},
		{"legacy_q", `queues[2] "legacy_*"`},
		{"other", "default queue rule"},
	} {
		if got := s.Queue(tc.queue).Name(); got != tc.want {
			t.Errorf("Queue(%q) = %s, want %s", tc.queue, got, tc.want)
		}
	}
	if got, want := s.Channel("events.signup").Name(), `channels[0] "events.*"`; got != want {
		t.Errorf("Channel = %s, want %s", got, want)
	}
	if got, want := s.Channel("email_queue").Name(), "default channel rule"; got != want {
		t.Errorf("queue rules must not apply to channels: got %s", got)
	}
	if s.Queue("legacy_q").Envelope || !s.Queue("other").Envelope {
		t.Error("envelope: on by default, off for legacy_*")
	}
	if !s.Queue("audit_1").DeliverEnvelope || s.Queue("other").DeliverEnvelope {
		t.Error("deliver: payload by default, envelope for audit_*")
	}
}

func TestPolicy_CheckRejections(t *testing.T) {
	s := testSet(t)
	for _, tc := range []struct {
		name, queue, value, want string
	}{
		{"valid email", "email_q", `{"receiver":"a@example.com","content":"hi"}`, ""},
		{"too big", "email_q", `{"receiver":"a@example.com","content":"` + strings.Repeat("x", 300) + `"}`, "value is 341 bytes, queue limit 256"},
		{"not json", "email_q", `{"receiver": x}`, "not JSON at offset 13: invalid character 'x' looking for beginning of value"},
		{"truncated json", "json_q", `{"a":`, "not JSON at offset 5: unexpected end of input"},
		{"trailing data", "json_q", `{} {}`, "not JSON at offset 3: data after the value"},
		{"missing property", "email_q", `{"content":"hi"}`, "schema email.json: /receiver: missing property"},
		{"wrong type", "email_q", `{"receiver":5,"content":"hi"}`, "schema email.json: /receiver: got number, want string"},
		{"any format accepts anything", "other", "\xff\x00 not json", ""},
		{"channel limit", "", strings.Repeat("1", 101), "value is 101 bytes, channel limit 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := s.Queue(tc.queue)
			if tc.queue == "" {
				p = s.Channel("events.x")
			}
			err := p.Check([]byte(tc.value))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("Check(%.40q) = %q, want %q", tc.value, got, tc.want)
			}
		})
	}
}

func TestPolicy_DedupKey(t *testing.T) {
	s := testSet(t)
	orders := s.Queue("orders")
	a, err := orders.DedupKey([]byte(`{"order_id": 7, "n": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := orders.DedupKey([]byte(`{"n": 2, "order_id": 7}`))
	c, _ := orders.DedupKey([]byte(`{"order_id": 8}`))
	if a != b || a == c {
		t.Fatalf("pointer keys: same order %q %q, other order %q", a, b, c)
	}
	if _, err := orders.DedupKey([]byte(`{"n":1}`)); err == nil || err.Error() != "dedup key /order_id: missing" {
		t.Fatalf("missing pointer: %v", err)
	}
	pings := s.Queue("pings")
	x, _ := pings.DedupKey([]byte("a"))
	y, _ := pings.DedupKey([]byte("b"))
	if x == y || pings.DedupWindow != DefaultDedupWindow || orders.DedupWindow != time.Minute {
		t.Fatalf("body keys %q %q, windows %s %s", x, y, pings.DedupWindow, orders.DedupWindow)
	}
}

func TestNewSet_ReportsEveryProblem(t *testing.T) {
	_, err := NewSet([]Rule{
		{Match: "", Format: "xml", Deliver: "later", MaxBytes: -1},
		{Match: "a", Schema: "missing.json", Dedup: Dedup{Key: "sometimes"}},
		{Match: "b", Dedup: Dedup{Key: "/id"}},
	}, []Rule{{Match: "c", Deliver: "x"}}, "testdata")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"queues[0].match: required",
		`queues[0].format: must be any or json, got "xml"`,
		`queues[0].deliver: must be payload or envelope, got "later"`,
		"queues[0].max_bytes: must be >= 0, got -1",
		"queues[1].schema: read schema",
		`queues[1].dedup.key: must be off, body or a JSON pointer`,
		"queues[2].dedup.key: a JSON pointer needs format: json or a schema",
		`channels[0].deliver: must be payload or envelope, got "x"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

func TestNewSet_BadSchema(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"type": 5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewSet([]Rule{{Match: "x", Schema: "bad.json"}}, nil, dir)
	if err == nil || !strings.Contains(err.Error(), "queues[0].schema: compile schema bad.json") {
		t.Fatalf("got %v", err)
	}
}

func TestDedup_YAMLForms(t *testing.T) {
	var r struct{ Dedup Dedup }
	if err := yaml.Unmarshal([]byte("dedup: body"), &r); err != nil || r.Dedup.Key != "body" {
		t.Fatalf("scalar: %+v %v", r, err)
	}
	if err := yaml.Unmarshal([]byte("dedup: {key: /id, window: 30s}"), &r); err != nil || r.Dedup.Key != "/id" || r.Dedup.Window != 30*time.Second {
		t.Fatalf("mapping: %+v %v", r, err)
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"email_queue": true, "events.signup": true, "a:b/c@d-e": true,
		"": false, "with space": false, "a*": false, "q?": false, `quo"te`: false,
		strings.Repeat("x", 200): true, strings.Repeat("x", 201): false, "tab\t": false, "é": false,
		// Hash tags (README "Queue names").
		"{tag}": true, "blist{t}": true, "{app}:email": true, "bull:{q}:wait": true, "}{a}": true,
		"x{{t}": true, "a{b": true, "{": true, "a{}b": false, "a}b": false, "}": false, "{}": false,
		"{}{t}": false, "{t}:qgate:inflight": false, "{t}:qgate:transit:x{t}:1": false,
		"{t}:qgatex": true, "x{t}:qgate:inflight": true, "{t}x:qgate:dead": true,
		strings.Repeat("x", 197) + "{t}": true, strings.Repeat("x", 198) + "{t}": false,
		"ctl{\x01}": false,
	} {
		if err := ValidateName("queue", name, false); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	if err := ValidateName("channel", "news.*", true); err != nil {
		t.Errorf("patterns may use globs: %v", err)
	}
	if err := ValidateName("pattern", "a{}*", true); err != nil {
		t.Errorf("patterns may use braces freely: %v", err)
	}
}

func TestValidateName_BraceErrors(t *testing.T) {
	for name, want := range map[string]string{
		"a{}b":               `invalid queue name "a{}b": a '}' must close a non-empty {hash tag}, as in jobs{t}`,
		"{t}:qgate:inflight": `invalid queue name "{t}:qgate:inflight": names of the form {...}:qgate:... are qgate's own keys`,
	} {
		if got := fmt.Sprint(ValidateName("queue", name, false)); got != want {
			t.Errorf("ValidateName(%q) = %s, want %s", name, got, want)
		}
	}
}

func TestSet_CacheIsBounded(t *testing.T) {
	s := testSet(t)
	for i := 0; i < 3*cacheSize; i++ {
		s.Queue("q" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i%13) + itoa(i))
	}
	if got := s.cache.Len(); got > cacheSize {
		t.Fatalf("cache holds %d entries, bound %d", got, cacheSize)
	}
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+i%10)) + string(rune('0'+(i/10)%10)) + string(rune('0'+(i/100)%10)) + string(rune('0'+(i/1000)%10)) + string(rune('0'+(i/10000)%10)))
}

// FuzzCheck drives the validator entry point with arbitrary values: it must never panic, and a value
// it accepts for a JSON rule must be valid JSON.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"receiver":"a@example.com","content":"hi"}`, `{"receiver":1}`, `[`, `"\ud800"`, `1e999`, ""} {
		f.Add([]byte(s))
	}
	s, err := NewSet([]Rule{{Match: "email_*", Schema: "email.json", MaxBytes: 4096}, {Match: "orders", Format: "json", Dedup: Dedup{Key: "/a/0"}}}, nil, "testdata")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if err := s.Queue("email_x").Check(v); err == nil {
			if _, jerr := decodeJSON(v); jerr != nil {
				t.Fatalf("accepted invalid JSON %q", v)
			}
		}
		_, _ = s.Queue("orders").DedupKey(v)
	})
}

func TestDelivery_YAMLAndDefaults(t *testing.T) {
	var rules []Rule
	src := `
- match: "email_*"
  delivery: at-least-once
  ack: next-pop
  visibility_timeout: 45s
  max_attempts: 3
  backoff: {initial: 2s, max: 1m, multiplier: 3, jitter: 0.1}
  dead_letter: false
- match: "*"
`
	if err := yaml.Unmarshal([]byte(src), &rules); err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(rules, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Queue("email_x")
	if !p.AtLeastOnce || !p.AckNextPop || p.VisibilityTimeout != 45*time.Second || p.MaxAttempts != 3 ||
		p.BackoffInitial != 2*time.Second || p.BackoffMax != time.Minute || p.BackoffMultiplier != 3 ||
		p.BackoffJitter != 0.1 || p.DeadLetter {
		t.Fatalf("email rule %+v", p)
	}
	for _, d := range []*Policy{s.Queue("other"), s.defQueue} {
		if d.AtLeastOnce || d.AckNextPop || d.VisibilityTimeout != 30*time.Second || d.MaxAttempts != 5 ||
			d.BackoffInitial != time.Second || d.BackoffMax != 5*time.Minute || d.BackoffMultiplier != 2 ||
			d.BackoffJitter != 0.2 || !d.DeadLetter {
			t.Fatalf("defaults %+v", d)
		}
	}
	if got := s.MinVisibility(); got != 30*time.Second {
		t.Fatalf("MinVisibility %s (at-most-once rules do not count)", got)
	}
}

func TestDelivery_Validation(t *testing.T) {
	zero, neg, big := 0, -1.0, 2.0
	_, err := NewSet([]Rule{{
		Match: "q", Delivery: "exactly-once", Ack: "never", VisibilityTimeout: time.Microsecond, MaxAttempts: &zero,
		Backoff: Backoff{Initial: 2 * time.Second, Max: time.Second, Multiplier: &neg, Jitter: &big},
	}}, []Rule{{Match: "c", Delivery: "at-least-once"}}, "")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`queues[0].delivery: must be at-most-once or at-least-once, got "exactly-once"`,
		`queues[0].ack: must be explicit or next-pop, got "never"`,
		`queues[0].visibility_timeout: must be at least 1ms, got 1µs`,
		`queues[0].max_attempts: must be >= 1, got 0`,
		`queues[0].backoff.max: must be >= backoff.initial (2s), got 1s`,
		`queues[0].backoff.multiplier: must be between 1 and 100, got -1`,
		`queues[0].backoff.jitter: must be between 0 and 1, got 2`,
		`channels[0].delivery: delivery settings apply to queues only`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestSet_RulesMatchTaggedNames: braces are literal characters in a rule's glob (as in Redis's
// KEYS and PSUBSCRIBE patterns, which have no {a,b} alternation), so rules can select tagged names.
func TestSet_RulesMatchTaggedNames(t *testing.T) {
	s, err := NewSet([]Rule{
		{Match: "{app}:*", MaxBytes: 1},
		{Match: "*{t}", MaxBytes: 2},
		{Match: "{a,b}", MaxBytes: 3},
	}, []Rule{{Match: "news{*}", MaxBytes: 4}}, "testdata")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"{app}:email": 1, "{app}x": 0, "jobs{t}": 2, "jobs{t}x": 0, "{t}": 2, "{a,b}": 3, "a": 0,
	} {
		if got := s.Queue(name).MaxBytes; got != want {
			t.Errorf("queue %q: rule with max_bytes %d, want %d", name, got, want)
		}
	}
	if got, want := s.Channel("news{t}").MaxBytes, int64(4); got != want {
		t.Errorf("channel news{t}: rule with max_bytes %d, want %d", got, want)
	}
}

// TestSchema_FormatsAreAnnotationsUnlessAsserted: "format" only fails a value with schema_formats: true.
func TestSchema_FormatsAreAnnotationsUnlessAsserted(t *testing.T) {
	dir := t.TempDir()
	schema := `{"type":"object","properties":{"to":{"type":"string","format":"email"}},"required":["to"]}`
	if err := os.WriteFile(filepath.Join(dir, "mail.json"), []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewSet([]Rule{
		{Match: "plain", Schema: "mail.json"},
		{Match: "strict", Schema: "mail.json", SchemaFormats: true},
	}, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	bad, good := []byte(`{"to":"not an address"}`), []byte(`{"to":"a@example.com"}`)
	if err := s.Queue("plain").Check(bad); err != nil {
		t.Fatalf("plain.Check(bad email) = %v, want nil (format is an annotation by default)", err)
	}
	if err := s.Queue("strict").Check(good); err != nil {
		t.Fatalf("strict.Check(good email) = %v, want nil", err)
	}
	err = s.Queue("strict").Check(bad)
	if err == nil {
		t.Fatal("strict.Check(bad email) = nil, want a format error")
	}
	if got, want := err.Error(), `schema mail.json: /to: 'not an address' is not valid email: missing @`; got != want {
		t.Fatalf("strict.Check(bad email) = %q, want %q", got, want)
	}
}

func TestSchema_FormatsNeedASchema(t *testing.T) {
	_, err := NewSet([]Rule{{Match: "q", Format: "json", SchemaFormats: true}}, nil, "")
	if got, want := errString(err), "queues[0].schema_formats: needs a schema"; got != want {
		t.Fatalf("NewSet() = %q, want %q", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestPolicy_WarningsShadowedRules(t *testing.T) {
	tests := []struct {
		name    string
		earlier string
		later   string
		want    bool // the later rule is reported as never applying
	}{
		{"identical", "email_*", "email_*", true},
		{"star covers all", "*", "a?[bc]", true},
		{"literal matched by glob", "email_*", "email_urgent", true},
		{"literal matched by class", "q[0-9]", "q7", true},
		{"escaped literal", `a\*`, `a\*`, true},
		{"prefix star covers longer prefix", "email_*", "email_urgent_*", true},
		{"literal not matched", "email_*", "sms", false},
		{"narrower first is fine", "email_urgent", "email_*", false},
		{"prefix star vs other prefix", "email_*", "e*", false},
		{"not detected: general subsumption", "a?c", "a[bc]c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Warnings([]Rule{{Match: tt.earlier}, {Match: tt.later}}, nil)
			want := []string(nil)
			if tt.want {
				want = []string{fmt.Sprintf("queues[1] %q: never applies: queues[0] %q comes first and matches every name it matches", tt.later, tt.earlier)}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Warnings() = %q, want %q", got, want)
			}
		})
	}
}

func TestPolicy_WarningsRetrySettingsWithoutAtLeastOnce(t *testing.T) {
	three := 3
	got := Warnings([]Rule{
		{Match: "a", MaxAttempts: &three, DeadLetter: off(), Ack: "next-pop"},
		{Match: "b", Delivery: "at-least-once", MaxAttempts: &three},
		{Match: "c", Delivery: "at-most-once", Backoff: Backoff{Max: time.Minute}},
		{Match: "d", Deliver: "envelope", Envelope: off()},
		{Match: "e", Deliver: "envelope"},
	}, nil)
	want := []string{
		`queues[0] "a": ack, max_attempts, dead_letter do nothing without delivery: at-least-once`,
		`queues[2] "c": backoff does nothing without delivery: at-least-once`,
		`queues[3] "d": deliver: envelope does nothing with envelope: false (items are stored without an envelope, so consumers get the payload)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Warnings() = %q, want %q", got, want)
	}
}

func TestControl_RuleFields(t *testing.T) {
	var r struct {
		Queues []Rule `yaml:"queues"`
	}
	src := "queues:\n  - {match: a, max_length: 10}\n  - {match: b, max_length: 3, overflow: drop-oldest, delay: 1500ms}\n  - {match: c}\n"
	if err := yaml.Unmarshal([]byte(src), &r); err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(r.Queues, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := s.Queue("a"), s.Queue("b"), s.Queue("c")
	if got, want := [3]any{a.MaxLength, a.DropOldest, a.Controlled()}, [3]any{int64(10), false, true}; got != want {
		t.Fatalf("a: max_length, drop-oldest, controlled = %v, want %v (reject is the default)", got, want)
	}
	if got, want := [3]any{b.MaxLength, b.DropOldest, b.Delay}, [3]any{int64(3), true, 1500 * time.Millisecond}; got != want {
		t.Fatalf("b = %v, want %v", got, want)
	}
	if got, want := c.Controlled(), false; got != want {
		t.Fatalf("c.Controlled() = %v, want %v (no max_length, no delay: the plain push path)", got, want)
	}
}

func TestControl_RuleErrors(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Match: "a", MaxLength: -1}, "queues[0].max_length: must be >= 0, got -1"},
		{Rule{Match: "a", MaxLength: 1, Overflow: "block"}, `queues[0].overflow: must be reject or drop-oldest, got "block"`},
		{Rule{Match: "a", Overflow: "reject"}, "queues[0].overflow: needs max_length"},
		{Rule{Match: "a", Delay: -time.Second}, "queues[0].delay: must be >= 0, got -1s"},
		{Rule{Match: "a", Delay: time.Microsecond}, "queues[0].delay: must be at least 1ms, got 1µs"},
		{Rule{Match: "a", Delay: MaxDelay + time.Second}, "queues[0].delay: must be at most 8760h0m0s, got 8760h0m1s"},
	} {
		_, err := NewSet([]Rule{tc.rule}, nil, "")
		if got := fmt.Sprint(err); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.rule, got, tc.want)
		}
	}
	_, err := NewSet(nil, []Rule{{Match: "c", Delay: time.Second}}, "")
	if got, want := fmt.Sprint(err), "channels[0].max_length: max_length, overflow and delay apply to queues only"; got != want {
		t.Errorf("channel rule with a delay: %s, want %s", got, want)
	}
}

func TestReplicas_Compile(t *testing.T) {
	s, err := NewSet([]Rule{
		{Match: "orders", Replicas: 1},
		{Match: "slow", Replicas: 2, ReplicasTimeout: 2 * time.Second},
	}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Queue("orders").Replicas, 1; got != want {
		t.Errorf("orders replicas = %d, want %d", got, want)
	}
	if got, want := s.Queue("orders").ReplicasTimeout, DefaultReplicasTimeout; got != want {
		t.Errorf("orders replicas_timeout = %s, want the default %s", got, want)
	}
	if got, want := s.Queue("slow").ReplicasTimeout, 2*time.Second; got != want {
		t.Errorf("slow replicas_timeout = %s, want %s", got, want)
	}
	if got, want := s.Queue("other").Replicas, 0; got != want {
		t.Errorf("default rule replicas = %d, want %d", got, want)
	}
}

func TestReplicas_CompileRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		queues   []Rule
		channels []Rule
		want     string
	}{
		{"negative", []Rule{{Match: "q", Replicas: -1}}, nil, "queues[0].replicas: must be >= 0"},
		{"timeout without replicas", []Rule{{Match: "q", ReplicasTimeout: time.Second}}, nil, "queues[0].replicas_timeout: needs replicas: N"},
		{"timeout too long", []Rule{{Match: "q", Replicas: 1, ReplicasTimeout: time.Minute}}, nil, "queues[0].replicas_timeout: must be at most 10s"},
		{"timeout under 1ms", []Rule{{Match: "q", Replicas: 1, ReplicasTimeout: time.Microsecond}}, nil, "queues[0].replicas_timeout: must be at least 1ms"},
		{"channel", nil, []Rule{{Match: "c", Replicas: 1}}, "channels[0].replicas: applies to queues only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSet(tc.queues, tc.channels, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewSet error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
