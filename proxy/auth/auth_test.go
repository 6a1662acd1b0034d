package auth

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/proxy/glob"
)

func hash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestNewStore_ReportsEveryProblem(t *testing.T) {
	_, err := NewStore([]UserConfig{
		{Name: "", PasswordHash: hash(t, "x")},
		{Name: "a b", PasswordHash: "hunter2"},
		{Name: "w", PasswordHash: hash(t, "x"), Push: []string{""}},
		{Name: "w", PasswordHash: hash(t, "y")},
	})
	if err == nil {
		t.Fatal("NewStore = nil error")
	}
	for _, want := range []string{"users[0].name: must not be empty", "users[1].name: must be printable", "users[1].password_hash: not a bcrypt hash",
		"users[2].push[0]: empty glob", `users[3].name: duplicate user "w"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error echoes a bad password_hash value: %v", err)
	}
}

func TestUser_Rights(t *testing.T) {
	no := false
	st, err := NewStore([]UserConfig{
		{Name: "worker", PasswordHash: hash(t, "x"), Pop: []string{"email_*"}, Subscribe: []string{"events.*", "news"}},
		{Name: "off", PasswordHash: hash(t, "x"), Enabled: &no},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Required() || st.Len() != 2 {
		t.Fatalf("Required=%v Len=%d", st.Required(), st.Len())
	}
	if st.Lookup("off").Enabled {
		t.Fatal("enabled: false ignored")
	}
	w := st.Lookup("worker")
	if !w.Enabled || !w.Allowed(RightPop, "email_queue") || w.Allowed(RightPush, "email_queue") || w.Allowed(RightPop, "sms") {
		t.Fatal("pop/push rights wrong")
	}
	for pat, want := range map[string]bool{
		"events.*": true, "news": true, "events.login": true, // literal glob, literal channels
		"events.[a-z]*": true, "events.?": true, // inside events.*
		"*": false, "e*": false, "news*": false, "sms": false,
	} {
		if got := w.MaySubscribePattern(pat); got != want {
			t.Errorf("MaySubscribePattern(%q) = %v, want %v", pat, got, want)
		}
	}
	var nilStore *Store
	if nilStore.Required() || nilStore.Lookup("x") != nil {
		t.Fatal("nil store must be open")
	}
}

func TestUser_MaySubscribePattern_WhenEveryChannelIsCovered(t *testing.T) {
	for _, tc := range []struct {
		subscribe []string
		allowed   []string
		refused   []string
	}{
		{ // * covers every pattern, as Redis ACL's &*
			subscribe: []string{"*"},
			allowed:   []string{"acc_x.*", "*", "?", "[a-z]*", "[", `\`, "x"},
		},
		{ // prefix*: patterns whose literal prefix starts with the prefix
			subscribe: []string{"events.*"},
			allowed:   []string{"events.*", "events.sub.*", "events.[a-z]*", "events.?", "events.x", "events.", `events.\**`, `\events.*`, `events\.*`},
			refused:   []string{"*", "e*", "events*", "events[.]*", "ev?nts.*", "*events.*", "event", "events", `events\*`},
		},
		{ // several trailing * are one
			subscribe: []string{"events.**"},
			allowed:   []string{"events.x*"},
			refused:   []string{"events*"},
		},
		{ // an escaped prefix
			subscribe: []string{`ev\*nts.*`},
			allowed:   []string{`ev\*nts.a*`, `ev\*nts.a`},
			refused:   []string{"ev*nts.a*", "events.a*"},
		},
		{ // a trailing \* is a literal *, not a prefix glob
			subscribe: []string{`events\*`},
			allowed:   []string{`events\*`, `event\s\*`},
			refused:   []string{"events*x", "events?", "events.*"},
		},
		{ // a glob without glob characters covers only the identical pattern
			subscribe: []string{"news"},
			allowed:   []string{"news", `ne\ws`},
			refused:   []string{"news*", "new?", "[n]ews", "*"},
		},
		{ // other globs: only the identical pattern and the literal channels they match
			subscribe: []string{"ev?nts.*", "a*b*"},
			allowed:   []string{"ev?nts.*", "events.x", "a*b*", "axxb"},
			refused:   []string{"events.*", "ev?nts.x*", "ab*", "a*b"},
		},
		{ // no subscribe right at all
			subscribe: nil,
			refused:   []string{"*", "x", "events.*"},
		},
	} {
		st, err := NewStore([]UserConfig{{Name: "u", PasswordHash: hash(t, "x"), Subscribe: tc.subscribe}})
		if err != nil {
			t.Fatal(err)
		}
		u := st.Lookup("u")
		for _, pat := range tc.allowed {
			if !u.MaySubscribePattern(pat) {
				t.Errorf("subscribe %q: MaySubscribePattern(%q) = false, want true", tc.subscribe, pat)
			}
		}
		for _, pat := range tc.refused {
			if u.MaySubscribePattern(pat) {
				t.Errorf("subscribe %q: MaySubscribePattern(%q) = true, want false", tc.subscribe, pat)
			}
		}
	}
}

// TestUser_MaySubscribePattern_NeverWidensRights checks the rule against the matcher: for random
// rights and patterns over a small alphabet, every channel (up to 5 bytes) that an allowed pattern
// matches is allowed by the rights.
func TestUser_MaySubscribePattern_NeverWidensRights(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	word := func(alphabet string, min, max int) string {
		b := make([]byte, min+rnd.IntN(max-min+1))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		return string(b)
	}
	var channels []string
	var grow func(s string)
	grow = func(s string) {
		channels = append(channels, s)
		if len(s) < 5 {
			for _, c := range "ab." {
				grow(s + string(c))
			}
		}
	}
	grow("")
	const globChars = `ab.*?[]^-\`
	pw := hash(t, "x")
	allowedSome := 0
	for range 300 {
		var rights []string
		for range 1 + rnd.IntN(2) {
			rights = append(rights, word(globChars, 1, 4))
		}
		st, err := NewStore([]UserConfig{{Name: "u", PasswordHash: pw, Subscribe: rights}})
		if err != nil {
			t.Fatal(err)
		}
		u := st.Lookup("u")
		for range 50 {
			pat := word(globChars, 1, 5)
			if !u.MaySubscribePattern(pat) {
				continue
			}
			allowedSome++
			for _, ch := range channels {
				if glob.Match(pat, ch) && !u.Allowed(RightSubscribe, ch) {
					t.Fatalf("subscribe %q: pattern %q is allowed, but it matches channel %q outside the rights", rights, pat, ch)
				}
			}
		}
	}
	if allowedSome < 100 {
		t.Fatalf("only %d patterns allowed: the test checks too little", allowedSome)
	}
}

func TestUser_Allowed_StarCoversTheEmptyName(t *testing.T) {
	st, err := NewStore([]UserConfig{{Name: "u", PasswordHash: hash(t, "x"), Push: []string{"*"}, Pop: []string{"a*"}}})
	if err != nil {
		t.Fatal(err)
	}
	u := st.Lookup("u")
	if got, want := u.Allowed(RightPush, ""), true; got != want {
		t.Errorf("push [*]: Allowed(\"\") = %v, want %v", got, want)
	}
	if got, want := u.Allowed(RightPop, ""), false; got != want {
		t.Errorf("pop [a*]: Allowed(\"\") = %v, want %v", got, want)
	}
}

func newAuth(t testing.TB) *Authenticator {
	st, err := NewStore([]UserConfig{{Name: "app", PasswordHash: hash(t, "s3cret")}})
	if err != nil {
		t.Fatal(err)
	}
	return NewAuthenticator(st)
}

func TestAuthenticator_CachesSuccessesOnly(t *testing.T) {
	a := newAuth(t)
	a.BaseDelay = 0
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, r := a.Login(ctx, "app", "s3cret", "10.0.0.1:1234"); r != OK {
			t.Fatalf("login %d = %v", i, r)
		}
	}
	if got := a.BcryptVerifications(); got != 1 {
		t.Fatalf("bcrypt runs = %d, want 1", got)
	}
	for i := 0; i < 3; i++ {
		if _, r := a.Login(ctx, "app", "wrong", "10.0.0.1:1234"); r != Failed {
			t.Fatalf("wrong password = %v", r)
		}
	}
	if got := a.BcryptVerifications(); got != 4 {
		t.Fatalf("bcrypt runs = %d, want 4 (failures are not cached)", got)
	}
	// Unknown users cost a bcrypt too (no enumeration by timing).
	if _, r := a.Login(ctx, "nobody", "s3cret", "10.0.0.2:1"); r != Failed || a.BcryptVerifications() != 5 {
		t.Fatalf("unknown user: %v, bcrypt runs %d", r, a.BcryptVerifications())
	}
	if a.Failures() != 4 {
		t.Fatalf("Failures = %d, want 4", a.Failures())
	}
}

func TestAuthenticator_ChangedHashInvalidates(t *testing.T) {
	a := newAuth(t)
	ctx := context.Background()
	if _, r := a.Login(ctx, "app", "s3cret", "h:1"); r != OK {
		t.Fatal(r)
	}
	st, _ := NewStore([]UserConfig{{Name: "app", PasswordHash: hash(t, "new")}})
	a.SetStore(st)
	if _, r := a.Login(ctx, "app", "s3cret", "h:1"); r != Failed {
		t.Fatalf("old password after change = %v, want Failed", r)
	}
	if _, r := a.Login(ctx, "app", "new", "h:1"); r != OK {
		t.Fatalf("new password = %v", r)
	}
	// The key binds the hash: even without a purge an entry for another hash never matches.
	if cacheKey("app", "x", []byte("h1")) == cacheKey("app", "x", []byte("h2")) {
		t.Fatal("cache key ignores the hash")
	}
}

func TestAuthenticator_ConcurrentLoginsShareOneBcrypt(t *testing.T) {
	a := newAuth(t)
	var wg sync.WaitGroup
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, r := a.Login(context.Background(), "app", "s3cret", "h:1"); r != OK {
				t.Errorf("login = %v", r)
			}
		}()
	}
	wg.Wait()
	if got := a.BcryptVerifications(); got != 1 {
		t.Fatalf("bcrypt runs = %d, want 1", got)
	}
}

func TestAuthenticator_SlowsDownFailuresPerAddress(t *testing.T) {
	a := newAuth(t)
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	a.BaseDelay, a.MaxDelay, a.HalfLife = 10*time.Millisecond, 80*time.Millisecond, 10*time.Second
	want := []time.Duration{0, 10, 20, 40, 80, 80}
	for i, w := range want {
		if got := a.delay("1.2.3.4"); got != w*time.Millisecond {
			t.Fatalf("delay after %d failures = %s, want %s", i, got, w*time.Millisecond)
		}
		a.failed("1.2.3.4")
	}
	if got := a.delay("5.6.7.8"); got != 0 {
		t.Fatalf("another address is slowed down: %s", got)
	}
	now = now.Add(time.Minute) // six half-lives: the score decays below one
	if got := a.delay("1.2.3.4"); got != 0 {
		t.Fatalf("delay after a quiet minute = %s, want 0", got)
	}
	// A slowed-down attempt gives up when its context ends.
	a.failed("9.9.9.9")
	a.failed("9.9.9.9")
	a.MaxDelay, a.BaseDelay = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, r := a.Login(ctx, "app", "s3cret", "9.9.9.9:1"); r != Cancelled {
		t.Fatalf("cancelled login = %v", r)
	}
}
