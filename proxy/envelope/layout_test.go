package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The layout contract with the Lua scripts (package doc, "The layout the Lua scripts depend on"),
// checked from this side: the pattern is read out of the scripts themselves, so the test fails when
// either the scripts' pattern or AppendEnvelope's layout changes without the other.

// scriptsWithPattern are the scripts that find the attempts counter, relative to this package.
var scriptsWithPattern = []string{"../rdb/scripts/retry.lua", "../rdb/scripts/redrive.lua"}

// scriptPattern returns the Lua pattern src passes to string.find(item, '…'), as the Lua source
// writes it (literal) and as Lua sees it (pattern).
func scriptPattern(t testing.TB, file string) (literal, pattern string) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const call = "string.find(item, '"
	i := strings.Index(string(src), call)
	if i < 0 || strings.Count(string(src), call) != 1 {
		t.Fatalf("%s: want exactly one %s…') call", file, call)
	}
	rest := string(src)[i+len(call):]
	var b strings.Builder
	for j := 0; j < len(rest); j++ {
		switch c := rest[j]; c {
		case '\'':
			return rest[:j], b.String()
		case '\\':
			j++
			if j == len(rest) || !strings.ContainsRune(`\'"`, rune(rest[j])) {
				t.Fatalf("%s: an escape this test does not decode in %q", file, rest[:j])
			}
			b.WriteByte(rest[j])
		case '\n':
			t.Fatalf("%s: unterminated string", file)
		default:
			b.WriteByte(c)
		}
	}
	t.Fatalf("%s: unterminated string", file)
	return "", ""
}

// luaToRegexp translates the Lua pattern constructs the scripts use (anchor, literal bytes, %d and
// escaped punctuation, [sets] and [^sets] of literal bytes, captures, the quantifiers + * ? -) into
// an equivalent Go regexp, failing on anything else.
func luaToRegexp(p string) (string, error) {
	var b strings.Builder
	b.WriteString("(?s)")
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '^' && i == 0:
			b.WriteByte('^')
		case c == '$' && i == len(p)-1:
			b.WriteString(`\z`)
		case c == '%':
			i++
			if i == len(p) {
				return "", fmt.Errorf("trailing %% in %q", p)
			}
			switch e := p[i]; {
			case e == 'd':
				b.WriteString("[0-9]")
			case !('a' <= e && e <= 'z' || 'A' <= e && e <= 'Z' || '0' <= e && e <= '9'):
				b.WriteString(regexp.QuoteMeta(string(e)))
			default:
				return "", fmt.Errorf("class %%%c not translated", e)
			}
		case c == '[':
			j := i + 1
			b.WriteByte('[')
			if j < len(p) && p[j] == '^' {
				b.WriteByte('^')
				j++
			}
			for ; j < len(p) && p[j] != ']'; j++ {
				if p[j] == '%' || p[j] == '-' || p[j] == '[' {
					return "", fmt.Errorf("set construct %q not translated", p[i:])
				}
				b.WriteString(regexp.QuoteMeta(string(p[j]))) // in a class too: `\\` is one backslash
			}
			if j == len(p) {
				return "", fmt.Errorf("unterminated set in %q", p)
			}
			b.WriteByte(']')
			i = j
		case c == '(' || c == ')' || c == '+' || c == '*' || c == '?':
			b.WriteByte(c)
		case c == '-':
			b.WriteString("*?")
		case c == '.':
			b.WriteByte('.')
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String(), nil
}

// attemptsPattern is the scripts' pattern as a Go regexp, checked to be the same in every script
// that uses it and to be the one the package doc states.
func attemptsPattern(t testing.TB) *regexp.Regexp {
	t.Helper()
	re, err := luaToRegexp(luaAttemptsPattern(t))
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(re)
}

// luaAttemptsPattern is the scripts' pattern as Lua sees it, checked as attemptsPattern says.
func luaAttemptsPattern(t testing.TB) string {
	t.Helper()
	var literal, pattern string
	for _, f := range scriptsWithPattern {
		l, p := scriptPattern(t, f)
		if literal != "" && l != literal {
			t.Fatalf("%s uses the pattern %q, %s uses %q", f, l, scriptsWithPattern[0], literal)
		}
		literal, pattern = l, p
	}
	doc, err := os.ReadFile("envelope.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "//\t"+literal+"\n") {
		t.Fatalf("the package doc does not state the scripts' pattern %s", literal)
	}
	return pattern
}

func TestLayout_PatternTranslation(t *testing.T) {
	re := attemptsPattern(t)
	want := `(?s)^\{"qgate":1,"id":"[^"\\]+","queue":"[^"\\]*","enqueued_at":"[^"\\]*","attempts":([0-9]+),`
	if re.String() != want {
		t.Fatalf("translated pattern\n got %s\nwant %s", re, want)
	}
}

// layoutEnvelopes are envelopes as qgate stores them: every payload kind, queue names using every
// character policy.ValidateName allows, producers that need JSON escaping, attempts across digit
// counts.
func layoutEnvelopes() []Envelope {
	var allowed strings.Builder
	for c := byte('!'); c < 0x7f; c++ {
		if !strings.ContainsRune(`"'\{}*?[]`, rune(c)) {
			allowed.WriteByte(c)
		}
	}
	at := time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC)
	var out []Envelope
	for i, payload := range [][]byte{[]byte(`{"a":[1,2]}`), []byte(`"attempts":7,`), []byte("text \"q\" \\"), {0xff, 0}, {}} {
		for j, queue := range []string{"q", "email_queue", allowed.String()} {
			for k, producer := range []string{"default", `we"ird\user`, "ünï <&>", ""} {
				for _, attempts := range []int{0, 1, 9, 10, 99, 12345} {
					out = append(out, Envelope{
						ID: NewID(), Queue: queue, Producer: producer, Attempts: attempts, Payload: payload,
						EnqueuedAt: at.Add(time.Duration(i*100+j*10+k) * time.Millisecond),
					})
				}
			}
		}
	}
	return out
}

// TestLayout_ScriptsFindAttempts: the scripts' pattern matches every stored envelope, delivered copies
// with a receipt too, capturing the attempts counter; splicing a new count where the scripts splice
// it (a Go transcription of retry.lua's string.sub arithmetic) gives the envelope with that count and
// nothing else changed.
func TestLayout_ScriptsFindAttempts(t *testing.T) {
	re := attemptsPattern(t)
	for _, e := range layoutEnvelopes() {
		stored := string(AppendEnvelope(nil, &e))
		for _, item := range []string{stored, WithReceipt(stored, "01JDX3B6T9Q4M2ZK8YJ3R5W7NCMFRGGZDF3XA2YKQ3T5W7NC4P.3")} {
			m := re.FindStringSubmatchIndex(item)
			if m == nil {
				t.Fatalf("the scripts' pattern does not match %s", item)
			}
			att := item[m[2]:m[3]]
			if att != strconv.Itoa(e.Attempts) {
				t.Fatalf("the scripts read attempts %q from %s, want %d", att, item, e.Attempts)
			}
			end := m[1] // one past the ',' that ends the match: Lua's e is end, 1-based
			for _, n := range []int{e.Attempts + 1, 0} {
				spliced := item[:end-1-len(att)] + strconv.Itoa(n) + item[end-1:]
				got, ok := Decode([]byte(spliced))
				if !ok {
					t.Fatalf("splicing %d into %s gives %s, which does not decode", n, item, spliced)
				}
				want := e
				want.Attempts = n
				if item != stored {
					want.Receipt = "01JDX3B6T9Q4M2ZK8YJ3R5W7NCMFRGGZDF3XA2YKQ3T5W7NC4P.3"
				}
				if !got.EnqueuedAt.Equal(want.EnqueuedAt) {
					t.Fatalf("enqueued_at %v, want %v", got.EnqueuedAt, want.EnqueuedAt)
				}
				got.EnqueuedAt = want.EnqueuedAt
				if !bytes.Equal(got.Payload, want.Payload) {
					t.Fatalf("payload %q, want %q", got.Payload, want.Payload)
				}
				got.Payload = want.Payload
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("splicing %d into %s decodes to %+v, want %+v", n, item, got, want)
				}
				if item == stored && spliced != string(AppendEnvelope(nil, &want)) {
					t.Fatalf("spliced %s, AppendEnvelope writes %s", spliced, AppendEnvelope(nil, &want))
				}
			}
		}
	}
}

// TestLayout_Prefix: every envelope starts with the exact bytes the scripts' pattern spells out up to
// the attempts digits: prefix, then id, queue, time and attempts in this order, unescaped.
func TestLayout_Prefix(t *testing.T) {
	if prefix != `{"qgate":1,"id":"` {
		t.Fatalf("prefix = %s", prefix)
	}
	// In a Lua pattern none of {"qgate":1,id: is magic: the pattern starts with prefix literally.
	if p := luaAttemptsPattern(t); !strings.HasPrefix(p, "^"+prefix) {
		t.Fatalf("the scripts' pattern %s does not start with ^%s", p, prefix)
	}
	re := attemptsPattern(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.FixedZone("X", 3600))
	e := Envelope{ID: "01JDX3B6T9Q4M2ZK8YJ3R5W7NC", Queue: "a.b-c_d:e", EnqueuedAt: at, Attempts: 42, Producer: "p", Payload: []byte("x")}
	want := `{"qgate":1,"id":"01JDX3B6T9Q4M2ZK8YJ3R5W7NC","queue":"a.b-c_d:e","enqueued_at":"2026-01-02T02:04:05.006Z","attempts":42,"producer":"p",`
	if got := string(AppendEnvelope(nil, &e)); !strings.HasPrefix(got, want) {
		t.Fatalf("envelope %s\ndoes not start with %s", got, want)
	}
	for _, item := range [][]byte{Append(nil, "q", "p", []byte("x")), Append([]byte("keep"), "q", "p", nil)[4:]} {
		if !bytes.HasPrefix(item, []byte(prefix)) || !Is(item) || !re.Match(item) {
			t.Fatalf("Append wrote %s", item)
		}
	}
}

// TestLayout_OtherOrdersAreRaw: the same members in another order, or with whitespace or escapes,
// are not found by the scripts (they would be retried as raw items, never dead-lettered), though
// Decode accepts those that start with prefix: the order is a contract of its own, beyond JSON.
func TestLayout_OtherOrdersAreRaw(t *testing.T) {
	re := attemptsPattern(t)
	for _, item := range []string{
		`{"qgate":1,"id":"x","queue":"q","attempts":3,"enqueued_at":"2026-11-23T20:55:01.123Z","producer":"p","text":"a"}`,
		`{"id":"x","qgate":1,"queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":3,"producer":"p","text":"a"}`,
		`{"qgate":1, "id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":3,"producer":"p","text":"a"}`,
		`{"qgate":1,"id":"x","queue":"q\u002e","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":3,"producer":"p","text":"a"}`,
	} {
		if _, ok := Decode([]byte(item)); !ok && Is([]byte(item)) {
			t.Fatalf("Decode(%s) failed", item)
		}
		if re.MatchString(item) {
			t.Fatalf("the scripts' pattern matches %s", item)
		}
	}
	// encoding/json writes struct fields in declaration order: a wire-struct encoder would not do.
	b, _ := json.Marshal(struct {
		ID       string `json:"id"`
		Qgate    int    `json:"qgate"`
		Attempts int    `json:"attempts"`
	}{"x", 1, 3})
	if re.Match(b) {
		t.Fatalf("the scripts' pattern matches %s", b)
	}
}

// FuzzLayout: for any payload, producer, queue name ValidateName allows and attempts count, the
// scripts' pattern finds the counter in AppendEnvelope's output.
func FuzzLayout(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "q", "default", uint32(0))
	f.Add([]byte("\xff"), "a.b", `"\`, uint32(99))
	f.Add([]byte(`","attempts":1,`), "x", "", uint32(1<<31))
	re := attemptsPattern(f)
	f.Fuzz(func(t *testing.T, payload []byte, queue, producer string, attempts uint32) {
		if !isValidUTF8(producer) || queue == "" {
			t.Skip()
		}
		for i := 0; i < len(queue); i++ {
			if c := queue[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"'\{}*?[]`, c) >= 0 {
				t.Skip() // not a queue name policy.ValidateName allows
			}
		}
		e := Envelope{ID: NewID(), Queue: queue, EnqueuedAt: time.Now(), Attempts: int(attempts), Producer: producer, Payload: payload}
		item := AppendEnvelope(nil, &e)
		m := re.FindSubmatch(item)
		if m == nil || string(m[1]) != strconv.FormatUint(uint64(attempts), 10) {
			t.Fatalf("pattern on %s: %q", item, m)
		}
	})
}

// FuzzPayload: Payload never panics, returns an envelope's payload when Decode accepts the item and
// the item itself otherwise.
func FuzzPayload(f *testing.F) {
	f.Add(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","text":"a"}`)
	f.Add(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":01,"producer":"p","json":1}`)
	f.Add(`{"qgate":1,"id":"`)
	f.Add("raw")
	f.Fuzz(func(t *testing.T, item string) {
		got := Payload(item)
		if e, ok := Decode([]byte(item)); ok {
			if got != string(e.Payload) {
				t.Fatalf("Payload(%q) = %q, Decode's payload %q", item, got, e.Payload)
			}
		} else if got != item {
			t.Fatalf("Payload(%q) = %q, want the item (Decode rejects it)", item, got)
		}
	})
}

// FuzzWithReceipt: WithReceipt never panics; it returns the item unchanged or a copy that decodes to
// the same envelope with the receipt, and the scripts' pattern reads the same attempts in both.
func FuzzWithReceipt(f *testing.F) {
	f.Add(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":2,"producer":"p","b64":"/w=="}`)
	f.Add(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":2,"producer":"p","text":"a","receipt":"old"}`)
	f.Add(`{"qgate":1,"id":"}`)
	re := attemptsPattern(f)
	const receipt = "01JDX3B6T9Q4M2ZK8YJ3R5W7NCMFRGGZDF3XA2YKQ3T5W7NC4P.3"
	f.Fuzz(func(t *testing.T, item string) {
		got := WithReceipt(item, receipt)
		if got == item {
			return
		}
		before, ok1 := Decode([]byte(item))
		after, ok2 := Decode([]byte(got))
		if !ok1 || !ok2 || after.Receipt != receipt || after.Attempts != before.Attempts || !bytes.Equal(after.Payload, before.Payload) {
			t.Fatalf("WithReceipt(%q) = %q: decoded %+v (%v) from %+v (%v)", item, got, after, ok2, before, ok1)
		}
		if a, b := re.FindStringSubmatch(item), re.FindStringSubmatch(got); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("the scripts read %q from the stored item and %q from the delivered copy", a, b)
		}
	})
}

// FuzzJSONString: jsonString splits off exactly the JSON string literals encoding/json accepts.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`"a"rest`, `"\u00e9\n"`, `"\x"`, "\"\x01\"", `"\"`, `"` + "\xff" + `"`, `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		str, rest, ok := jsonString(p)
		if !ok {
			return
		}
		if str+rest != p || !strings.HasPrefix(str, `"`) || !strings.HasSuffix(str, `"`) || len(str) < 2 {
			t.Fatalf("jsonString(%q) = %q, %q", p, str, rest)
		}
		var s string
		if err := json.Unmarshal([]byte(str), &s); err != nil {
			t.Fatalf("jsonString(%q) accepted %q, which encoding/json rejects: %v", p, str, err)
		}
	})
}
