package glob

import (
	"strings"
	"testing"
	"time"
)

// matchCases are checked against Match, against the transcription of Redis's code (redisMatch), and
// against a real redis-server (TestMatch_AgreesWithRedisServer).
var matchCases = []struct {
	pattern, s string
	want       bool
}{
	{"*", "anything", true},
	{"*", "", false}, // stringmatchlen never matches an empty string to a non-empty pattern
	{"", "", true},
	{"", "a", false},
	{"?", "", false},
	{"**", "x", true},
	{"a*", "a", true},
	{"a**", "a", true},
	{"a*?", "a", false},
	{"*a", "a", true},
	{"email_*", "email_queue", true},
	{"email_*", "emails", false},
	{"h?llo", "hello", true},
	{"h?llo", "hllo", false},
	{"h*llo", "heeeello", true},
	{"h[ae]llo", "hallo", true},
	{"h[ae]llo", "hillo", false},
	{"h[^e]llo", "hallo", true},
	{"h[^e]llo", "hello", false},
	{"h[a-b]llo", "hbllo", true},
	{"h[b-a]llo", "hallo", true}, // reversed range
	{"h[a-b]llo", "hcllo", false},
	{"[a-c-e]", "d", false}, // a-c, then '-', then 'e'
	{"[a-c-e]", "-", true},
	{"[-a]", "-", true},
	{"[a-]", "-", false}, // "a-]" is a range from ']' to 'a'; the class is unterminated
	{"[a-]", "]", true},
	{"[a-]", "^", true},
	{"[a-]x]", "x", true}, // one class: ']'..'a' and 'x'
	{"[a-]x]", "]x]", false},
	{"[]a]", "]", false}, // "[]" is an empty class, then "a]"
	{"[]a]", "a", false},
	{"[^]a]", "xa]", true},
	{"[\\]]", "]", true},
	{"[\\-a]", "b", false},
	{"[\\", "\\", true},
	{"[a\\", "\\", true},
	{"[", "a", false},
	{"[", "", false},
	{"[^", "a", true},
	{"[^", "ab", false},
	{"[abc", "a", true},
	{"[abc", "d", false},
	{"[a*", "*", true},
	{"[a*", "ab", false},
	{"x[a-", "x-", true},
	{"x[a-", "xb", false},
	{`h\*llo`, "h*llo", true},
	{`h\*llo`, "hello", false},
	{`\?`, "?", true},
	{`\?`, "a", false},
	{`a\`, `a\`, true}, // a trailing backslash is literal
	{`a\`, "a", false},
	{`\\`, `\`, true},
	{`*\`, `ab\`, true},
	{"news.*", "news.tech", true},
	{"a*b*c", "aXXbYYc", true},
	{"a*b*c", "aXXbYY", false},
	{"*a*b", "xaxb", true},
	{"*a*b", "xbxa", false},
	{"*[ab]", "xxa", true},
	{"*?", "x", true},
	{"*??", "x", false},
	{"abc", "abc", true},
	{"ab", "abc", false},
	{"abc", "ab", false},
	{"A", "a", false}, // case-sensitive
	{"\x00", "\x00", true},
	{"[a-\xff]", "\x01", true}, // bounds compared as signed bytes: \xff (-1) to 'a'
	{"[a-\xff]", "b", false},
	{"[a-\xff]", "\x80", false},
	{"[\x80-\xff]", "\x90", true},
	{"*a*a*a*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 60), false},
	{"*a*a*a*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 60) + "b", true},
	{strings.Repeat("a*", 1000) + "b", strings.Repeat("a", 1050) + "b", true},    // * nested 1,000 deep
	{strings.Repeat("a*", 1001) + "b", strings.Repeat("a", 1050) + "b", false},   // 1,001: too deep for Redis
	{strings.Repeat("*a", 1000) + "*", strings.Repeat("a", 1050), true},          // a final * is no level
	{strings.Repeat("*", 5000) + "a", "xa", true},                                // one run of *
	{strings.Repeat("a\\*", 1001) + "b", strings.Repeat("a*", 1001) + "b", true}, // escaped, no nesting
}

func TestMatch_RedisRules(t *testing.T) {
	for _, tc := range matchCases {
		if got, want := Match(tc.pattern, tc.s), tc.want; got != want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, want)
		}
		if got, want := redisMatch(tc.pattern, tc.s), tc.want; got != want {
			t.Errorf("redisMatch(%q, %q) = %v, want %v (the table or the transcription is wrong)", tc.pattern, tc.s, got, want)
		}
	}
}

// stepBound is the promised worst case: the pattern scanned once per byte of s, and once more.
func stepBound(pattern, s string) int { return (len(pattern) + 1) * (len(s) + 2) }

func TestMatch_PathologicalPatternsAreFast(t *testing.T) {
	nested := "*a*a*a*a*a*a*a*a*a*a*a*b" // minutes per name for a backtracking matcher
	for _, tc := range []struct{ name, pattern, s string }{
		{"nested stars, 60 bytes", nested, strings.Repeat("a", 60)},
		{"nested stars, 10 KB", nested, strings.Repeat("a", 10<<10)},
		{"nested classes, 10 KB", strings.Repeat("*[a]", 30) + "[b]", strings.Repeat("a", 10<<10)},
		{"nested ?, 10 KB", strings.Repeat("*?a", 30) + "b", strings.Repeat("a", 10<<10)},
		{"200-byte pattern, 10 KB", strings.Repeat("*a", 99) + "b", strings.Repeat("a", 10<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				ok    bool
				steps int
			}
			done := make(chan result, 1)
			go func() {
				ok, steps := match(tc.pattern, tc.s)
				done <- result{ok, steps}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Second): // a backtracking matcher would still be running in an hour
				t.Fatal("no answer within 1s")
			}
			if r.ok {
				t.Error("matched, want no match")
			}
			if got, max := r.steps, stepBound(tc.pattern, tc.s); got > max {
				t.Errorf("steps = %d, want <= %d", got, max)
			}
		})
	}
}

// maxOracleLen bounds the inputs given to redisMatch.
const maxOracleLen = 48

// FuzzMatch compares Match with the transcription of Redis's code on small inputs, and checks the
// work bound on every input.
func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		if len(tc.pattern) <= maxOracleLen && len(tc.s) <= maxOracleLen {
			f.Add(tc.pattern, tc.s)
		}
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		start := time.Now()
		got, steps := match(pattern, s)
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Fatalf("Match(%q, %q) took %v", pattern, s, elapsed)
		}
		if max := stepBound(pattern, s); steps > max {
			t.Fatalf("Match(%q, %q) took %d steps, want <= %d", pattern, s, steps, max)
		}
		if len(pattern) <= maxOracleLen && len(s) <= maxOracleLen {
			if want := redisMatch(pattern, s); got != want {
				t.Fatalf("Match(%q, %q) = %v, Redis says %v", pattern, s, got, want)
			}
		}
		prefix, rest := LiteralPrefix(pattern)
		if got && !strings.HasPrefix(s, prefix) {
			t.Fatalf("Match(%q, %q) = true, but LiteralPrefix says every match starts with %q", pattern, s, prefix)
		}
		if rest == "" && got != (s == prefix) {
			t.Fatalf("Match(%q, %q) = %v, but LiteralPrefix says the pattern matches %q alone", pattern, s, got, prefix)
		}
	})
}

func TestLiteralPrefix_StopsAtTheFirstUnescapedSpecial(t *testing.T) {
	for _, tc := range []struct{ pattern, prefix, rest string }{
		{"", "", ""},
		{"events.*", "events.", "*"},
		{"events.sub.*", "events.sub.", "*"},
		{"a?b", "a", "?b"},
		{"a[bc]", "a", "[bc]"},
		{"*", "", "*"},
		{`ev\*ents*`, "ev*ents", "*"},
		{`a\b`, "ab", ""},
		{`a\\b`, `a\b`, ""},
		{`a\`, `a\`, ""},       // a trailing backslash is literal
		{"a]b^-", "a]b^-", ""}, // special only inside a class
	} {
		prefix, rest := LiteralPrefix(tc.pattern)
		if prefix != tc.prefix || rest != tc.rest {
			t.Errorf("LiteralPrefix(%q) = %q, %q; want %q, %q", tc.pattern, prefix, rest, tc.prefix, tc.rest)
		}
	}
}
