package auth

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
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

func TestAuthenticator_FailedRepliesWaitLongerPerAddress(t *testing.T) {
	a := newAuth(t)
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	a.BaseDelay, a.MaxDelay, a.HalfLife = 10*time.Millisecond, 80*time.Millisecond, 10*time.Second
	for i, w := range []time.Duration{10, 20, 40, 80, 80} {
		if got, want := a.failed("1.2.3.4"), w*time.Millisecond; got != want {
			t.Fatalf("delay of failure %d = %s, want %s", i+1, got, want)
		}
	}
	if got, want := a.failed("5.6.7.8"), 10*time.Millisecond; got != want {
		t.Fatalf("another address's first failure waits %s, want %s", got, want)
	}
	now = now.Add(time.Minute) // six half-lives: the score decays below one
	if got, want := a.failed("1.2.3.4"), 10*time.Millisecond; got >= 11*time.Millisecond {
		t.Fatalf("failure after a quiet minute waits %s, want about %s", got, want)
	}
	a.BaseDelay = 0
	if got := a.failed("1.2.3.4"); got != 0 {
		t.Fatalf("auth_failure_delay 0 still delays: %s", got)
	}
}

// The reply to a wrong password itself waits (lower bounds only: the machine may be slow), and
// the wait ends early, still as a failure, when the context ends.
func TestAuthenticator_WrongPasswordReplyIsDelayed(t *testing.T) {
	a := newAuth(t)
	a.BaseDelay, a.MaxDelay, a.HalfLife = 40*time.Millisecond, time.Hour, 0 // no decay: exact doubling
	for i, want := range []time.Duration{40 * time.Millisecond, 80 * time.Millisecond} {
		start := time.Now()
		if _, r := a.Login(context.Background(), "app", "wrong", "10.0.0.1:1"); r != Failed {
			t.Fatalf("wrong password = %v", r)
		}
		if got := time.Since(start); got < want {
			t.Fatalf("failure %d answered after %s, want at least %s", i+1, got, want)
		}
	}
	a.BaseDelay = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { _, r := a.Login(ctx, "nobody", "wrong", "10.0.0.1:2"); done <- r }()
	waitFor(t, "the failure counted", func() bool { return a.Failures() == 3 })
	cancel()
	if got, want := recv(t, done), Failed; got != want {
		t.Fatalf("interrupted delay = %v, want %v", got, want)
	}
}

// After many failures from an address, a correct login from it, cached or not, does not wait.
func TestAuthenticator_CorrectLoginNeverDelayed(t *testing.T) {
	st, err := NewStore([]UserConfig{{Name: "app", PasswordHash: hash(t, "s3cret")}, {Name: "other", PasswordHash: hash(t, "pw2")}})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(st)
	a.BaseDelay, a.MaxDelay = time.Hour, time.Hour
	if _, r := a.Login(context.Background(), "app", "s3cret", "10.0.0.1:1"); r != OK {
		t.Fatalf("first login = %v", r)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel() // the failing clients do not wait for their hour-long delays
	for i := 0; i < 25; i++ {
		if _, r := a.Login(gone, "app", "wrong", "10.0.0.1:"+strconv.Itoa(100+i)); r != Failed {
			t.Fatalf("wrong password = %v", r)
		}
	}
	for _, c := range []struct{ user, pw string }{{"app", "s3cret"}, {"other", "pw2"}} { // cached, then not
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, r := a.Login(ctx, c.user, c.pw, "10.0.0.1:200")
		cancel()
		if r != OK {
			t.Fatalf("correct login of %s after 25 failures = %v", c.user, r)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("correct login of %s after 25 failures took %s", c.user, took)
		}
	}
}

// slowBcrypt replaces a's comparison with one that records which password runs, blocks until the
// test sends on release, then compares for real. Passwords are tag#n: distinct passwords do not share
// a check, and the tag says whose comparison runs.
type slowBcrypt struct {
	mu      sync.Mutex
	running map[string]int // by tag
	most    map[string]int
	order   []string
	release chan struct{}
}

func slowDown(a *Authenticator) *slowBcrypt {
	s := &slowBcrypt{running: map[string]int{}, most: map[string]int{}, release: make(chan struct{})}
	a.bcrypt = func(hash, pw []byte) error {
		tag, _, _ := strings.Cut(string(pw), "#")
		s.mu.Lock()
		s.running[tag]++
		s.most[tag] = max(s.most[tag], s.running[tag])
		s.order = append(s.order, tag)
		s.mu.Unlock()
		<-s.release
		s.mu.Lock()
		s.running[tag]--
		s.mu.Unlock()
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	return s
}

func TestAuthenticator_BoundsConcurrentBcryptsPerAddressAndOverall(t *testing.T) {
	a := newAuth(t)
	a.BaseDelay = 0
	a.SetConcurrency(3, 2)
	slow := slowDown(a)
	var wg sync.WaitGroup
	flood := func(host string) {
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, r := a.Login(context.Background(), "app", host+"#"+strconv.Itoa(i), host+":"+strconv.Itoa(i)); r != Failed {
					t.Errorf("wrong password = %v", r)
				}
			}()
		}
	}
	flood("10.0.0.1")
	waitFor(t, "the first address's comparisons", func() bool { return a.running.Load() >= 2 })
	flood("10.0.0.2")
	waitFor(t, "3 comparisons running", func() bool { return a.running.Load() == 3 })
	slow.mu.Lock()
	first, second := slow.running["10.0.0.1"], slow.running["10.0.0.2"]
	slow.mu.Unlock()
	if first != 2 || second != 1 {
		t.Errorf("comparisons running: first address %d, second %d; want 2 and 1", first, second)
	}
	close(slow.release)
	wg.Wait()
	if got, want := a.BcryptPeak(), int64(3); got != want {
		t.Errorf("peak of comparisons at once = %d, want %d", got, want)
	}
	for _, h := range []string{"10.0.0.1", "10.0.0.2"} {
		if got, want := slow.most[h], 2; got > want {
			t.Errorf("%s ran %d comparisons at once, want at most %d", h, got, want)
		}
	}
	if got, want := a.BcryptVerifications(), int64(8); got != want {
		t.Errorf("bcrypt runs = %d, want %d", got, want)
	}
	if got, want := len(a.addrs), 0; got != want {
		t.Errorf("%d addresses still tracked after the logins ended, want %d", got, want)
	}
}

// One address flooding wrong passwords holds at most its two places in the overall queue: a login
// from another address runs at the latest third.
func TestAuthenticator_FloodingAddressDoesNotStarveOthers(t *testing.T) {
	a := newAuth(t)
	a.BaseDelay = 0
	a.SetConcurrency(1, 2)
	slow := slowDown(a)
	var wg sync.WaitGroup
	login := func(pw, addr string, want Result) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, r := a.Login(context.Background(), "app", pw, addr); r != want {
				t.Errorf("login from %s = %v, want %v", addr, r, want)
			}
		}()
	}
	for i := 0; i < 10; i++ {
		login("flood#"+strconv.Itoa(i), "10.0.0.1:"+strconv.Itoa(i), Failed)
	}
	waitFor(t, "the flood's first comparison", func() bool { return a.running.Load() == 1 })
	login("s3cret", "10.0.0.2:1", OK)
	// Everyone else queued: the flood's second for the overall slot, the other 8 for the address's,
	// the other address's login for the overall slot.
	waitFor(t, "10 logins queued", func() bool { return goroutinesIn("semaphore.(*Weighted).Acquire") == 10 })
	for i := 0; i < 11; i++ {
		slow.release <- struct{}{}
	}
	wg.Wait()
	if got := slices.Index(slow.order, "s3cret"); got < 0 || got > 2 {
		t.Fatalf("the other address's login ran at position %d of %v, want at most 2", got, slow.order)
	}
}

// With every bcrypt slot taken: cached credentials are answered at once; other logins wait at most
// MaxWait (Busy), or until their context ends (Cancelled); neither counts as a failure.
func TestAuthenticator_WaitForBcryptSlotIsBounded(t *testing.T) {
	a := newAuth(t)
	a.BaseDelay = 0
	if _, r := a.Login(context.Background(), "app", "s3cret", "10.0.0.1:1"); r != OK {
		t.Fatalf("first login = %v", r)
	}
	a.SetConcurrency(1, 2)
	slow := slowDown(a)
	busy := make(chan Result, 1)
	go func() { _, r := a.Login(context.Background(), "app", "wrong", "10.0.0.9:1"); busy <- r }()
	waitFor(t, "the slot taken", func() bool { return a.running.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, r := a.Login(ctx, "app", "s3cret", "10.0.0.9:2"); r != OK {
		t.Fatalf("cached login while the slots are taken = %v, want OK at once", r)
	}

	a.MaxWait = 50 * time.Millisecond
	start := time.Now()
	if _, r := a.Login(ctx, "app", "uncached", "10.0.0.2:1"); r != Busy {
		t.Fatalf("login past MaxWait = %v, want Busy", r)
	}
	if took := time.Since(start); took < a.MaxWait {
		t.Fatalf("Busy after %s, before MaxWait %s", took, a.MaxWait)
	}

	a.MaxWait = time.Hour
	gone, leave := context.WithCancel(context.Background())
	cancelled := make(chan Result, 1)
	go func() { _, r := a.Login(gone, "nobody", "x", "10.0.0.3:1"); cancelled <- r }()
	waitFor(t, "the address waiting for its slot", func() bool {
		a.addrMu.Lock()
		defer a.addrMu.Unlock()
		return a.addrs["10.0.0.3"] != nil
	})
	leave()
	if got, want := recv(t, cancelled), Cancelled; got != want {
		t.Fatalf("login whose client left while waiting = %v, want %v", got, want)
	}
	close(slow.release)
	if got, want := recv(t, busy), Failed; got != want {
		t.Fatalf("the slot holder's login = %v, want %v", got, want)
	}
	if got, want := a.Failures(), int64(1); got != want {
		t.Fatalf("Failures = %d, want %d (Busy and Cancelled are not failures)", got, want)
	}
}

// Logins with the same credentials share the first caller's bcrypt; when that caller leaves while
// waiting for its slot, the one still waiting goes on by itself.
func TestAuthenticator_SharedCheckSurvivesFirstCallerLeaving(t *testing.T) {
	a := newAuth(t)
	a.BaseDelay = 0
	a.SetConcurrency(1, 2)
	slow := slowDown(a)
	holder := make(chan Result, 1)
	go func() { _, r := a.Login(context.Background(), "app", "wrong", "10.0.0.9:1"); holder <- r }()
	waitFor(t, "the slot taken", func() bool { return a.running.Load() == 1 })
	first, leave := context.WithCancel(context.Background())
	results := make(chan Result, 2)
	go func() { _, r := a.Login(first, "app", "s3cret", "10.0.0.1:1"); results <- r }()
	waitFor(t, "the first caller waiting for its slot", func() bool {
		a.addrMu.Lock()
		defer a.addrMu.Unlock()
		return a.addrs["10.0.0.1"] != nil
	})
	go func() { _, r := a.Login(context.Background(), "app", "s3cret", "10.0.0.2:1"); results <- r }()
	waitFor(t, "the second caller sharing the check", func() bool { return goroutinesIn("singleflight.(*Group).Do", "WaitGroup).Wait") == 1 })
	leave()
	if got, want := recv(t, results), Cancelled; got != want {
		t.Fatalf("first caller = %v, want %v", got, want)
	}
	close(slow.release)
	if got, want := recv(t, results), OK; got != want {
		t.Fatalf("second caller = %v, want %v", got, want)
	}
	recv(t, holder)
}

// goroutinesIn counts the goroutines whose stack contains every one of frames.
func goroutinesIn(frames ...string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		all := true
		for _, f := range frames {
			all = all && strings.Contains(g, f)
		}
		if all {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds; the test fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(delay)
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a login to end")
	}
	var zero T
	return zero
}
