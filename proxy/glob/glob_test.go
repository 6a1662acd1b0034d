package glob

import "testing"

func TestMatch_RedisRules(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
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
		{"h[b-a]llo", "hallo", true},
		{"h[a-b]llo", "hcllo", false},
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hello", false},
		{"news.*", "news.tech", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"", "", true},
		{"", "a", false},
		{"abc", "abc", true},
		{"ab", "abc", false},
		{"[abc", "a", true},
	} {
		if got := Match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{"*", "a[b-c]?", `\`, "[", "[^", "**x", "[a-"} {
		f.Add(s, "abc")
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		Match(pattern, s) // must not panic or hang
		if !Match("*", s) {
			t.Fatalf("* must match %q", s)
		}
		if len(pattern) < 64 && !containsMeta(pattern) && !Match(pattern, pattern) {
			t.Fatalf("literal %q must match itself", pattern)
		}
	})
}

func containsMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\', ']', '^', '-':
			return true
		}
	}
	return false
}
