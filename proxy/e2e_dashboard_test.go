package proxy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// End-to-end tests of the dashboard (README "Dashboard") in headless Chromium, against a real
// redis-server and an in-process qgate. Without Chromium they are skipped, unless
// QGATE_REQUIRE_CHROMIUM=1 (CI), which makes a missing browser a failure.

// dashTimeout bounds one test's browser: everything it does ends by then.
const dashTimeout = 90 * time.Second

// dashBrowser is a headless Chromium tab of the test's own; console errors and uncaught exceptions
// of its pages (a CSP violation is one) are collected for dashNoConsoleErrors.
type dashBrowser struct {
	ctx  context.Context
	mu   sync.Mutex
	errs []string
}

func dashStartBrowser(t *testing.T) *dashBrowser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("QGATE_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("no chromium in PATH and QGATE_REQUIRE_CHROMIUM=1")
		}
		t.Skip("no chromium in PATH (set QGATE_REQUIRE_CHROMIUM=1 to make this a failure)")
	}
	tctx, cancelT := context.WithTimeout(context.Background(), dashTimeout)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Headless, chromedp.WindowSize(1280, 800), chromedp.Flag("disable-gpu", true))
	actx, cancelA := chromedp.NewExecAllocator(tctx, opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelC()
		cancelA()
		cancelT()
	})
	b := &dashBrowser{ctx: ctx}
	msgs := chromedp.Console(ctx) // starts the browser
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.mu.Lock()
				b.errs = append(b.errs, m.String())
				b.mu.Unlock()
			}
		}
	}()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// do runs steps in the browser and fails the test on an error (a wait past dashTimeout is one).
func (b *dashBrowser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// poll waits until the JavaScript expression is truthy in the page.
func (b *dashBrowser) poll(t *testing.T, expr string) {
	t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(e2eWaitBound))); err != nil {
		t.Fatalf("wait for %s: %v", expr, err)
	}
}

func (b *dashBrowser) text(t *testing.T, css string) string {
	t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

// noConsoleErrors fails the test if a page logged an error or threw.
func (b *dashBrowser) noConsoleErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		t.Errorf("browser console: %s", e)
	}
}

// answerLogins makes the tab answer HTTP authentication challenges as a person at the browser's
// login prompt would: cancel it while creds returns ok false, else type the credentials in. It
// returns the challenges seen.
func (b *dashBrowser) answerLogins(t *testing.T, creds func() (user, pass string, ok bool)) func() []fetch.AuthChallenge {
	t.Helper()
	var mu sync.Mutex
	var seen []fetch.AuthChallenge
	call := func(f func(ctx context.Context, tg *chromedp.Target) error) {
		if err := chromedp.Do(b.ctx, chromedp.Func(f)); err != nil && b.ctx.Err() == nil {
			t.Errorf("answer a paused request: %v", err)
		}
	}
	paused, challenges := chromedp.Events(b.ctx, fetch.RequestPaused), chromedp.Events(b.ctx, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			call(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				return err
			})
		}
	}()
	go func() {
		for ev, err := range challenges {
			if err != nil {
				return
			}
			mu.Lock()
			seen = append(seen, *ev.AuthChallenge)
			mu.Unlock()
			answer := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if user, pass, ok := creds(); ok {
				answer = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: pass}
			}
			call(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: answer})
				return err
			})
		}
	}()
	b.do(t, "intercept authentication", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{HandleAuthRequests: ptr(true)})
		return err
	}))
	return func() []fetch.AuthChallenge {
		mu.Lock()
		defer mu.Unlock()
		return append([]fetch.AuthChallenge(nil), seen...)
	}
}

// dashAge is how the dashboard writes an age.
var dashAge = regexp.MustCompile(`^(\d+ms|\d+[dhms]( \d+[hms])?)$`)

func dashRow(queue string) chromedp.CSS {
	return chromedp.CSS(fmt.Sprintf(`#queues tr[data-queue=%q]`, queue))
}

func TestDashboard_QueuesTableShowsPushedQueue(t *testing.T) {
	b := dashStartBrowser(t)
	e := e2eStart(t, httpOn)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	items := make([]any, 1234)
	for i := range items {
		items[i] = i
	}
	if err := c.RPush(ctx, "orders", items...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.RPush(ctx, "mail", "m").Err(); err != nil {
		t.Fatal(err)
	}
	base := httpBase(t, e.Qgate)
	b.do(t, "open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(dashRow("orders")), chromedp.WaitVisible(dashRow("mail")))
	if got, want := b.text(t, `#queues tr[data-queue="orders"] td:nth-child(4)`), "1,234"; got != want {
		t.Errorf("ready of orders = %q, want %q", got, want)
	}
	if got, want := b.text(t, `#queues tr[data-queue="orders"] td:nth-child(2)`), "at-most-once"; got != want {
		t.Errorf("delivery of orders = %q, want %q", got, want)
	}
	if got := b.text(t, `#queues tr[data-queue="orders"] td:nth-child(8)`); !dashAge.MatchString(got) {
		t.Errorf("oldest age of orders = %q, want a whole duration like 850ms or 3m 12s", got)
	}
	// Sorted by name: mail before orders.
	if got, want := b.text(t, `#queues tbody tr:first-child td:first-child`), "mail"; got != want {
		t.Errorf("first row = %q, want %q", got, want)
	}
	b.do(t, "sort by ready", chromedp.Click(chromedp.CSS(`#queues th:nth-child(4)`)),
		chromedp.WaitVisible(chromedp.CSS(`#queues tbody tr:first-child[data-queue="orders"]`)))
	if got, want := b.text(t, `#queues tbody tr:last-child td:first-child`), "mail"; got != want {
		t.Errorf("last row sorted by ready, largest first = %q, want %q", got, want)
	}
	b.do(t, "filter on ord", chromedp.SendKeys(chromedp.ID("filter"), "ord"), chromedp.WaitNotPresent(dashRow("mail")),
		chromedp.WaitVisible(dashRow("orders")))
	b.do(t, "open the clients page", chromedp.Click(chromedp.CSS(`nav a[data-nav="clients"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#clients tbody tr`)))
	if got, want := b.text(t, `#clients tbody tr td:nth-child(5)`), "3"; got != want {
		t.Errorf("RESP version of the client = %q, want %q", got, want)
	}
	if got := b.text(t, `#clients tbody tr td:nth-child(9)`); !dashAge.MatchString(got) {
		t.Errorf("age of the client = %q, want a whole duration like 850ms or 3m 12s", got)
	}
	b.noConsoleErrors(t)
}

// The API additions the dashboard reads (README "Dashboard"), without a browser.
func TestDashboardAPI_DetailListPolicyAndStatus(t *testing.T) {
	rule := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: time.Minute, MaxAttempts: ptr(3)}
	e := e2eStart(t, httpOn, func(c *proxy.Config) { c.Queues = []policy.Rule{rule} })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.LPop(ctx, "jobs").Err(); err != nil {
		t.Fatal(err)
	}
	base := httpBase(t, e.Qgate)

	type detail struct {
		Name             string
		Ready            int64
		InFlight         int64  `json:"in_flight"`
		OldestReadyAgeMs *int64 `json:"oldest_ready_age_ms"`
		Counters         *struct{ Pushed, Popped int64 }
		Policy           *struct {
			Match       string
			Delivery    string
			MaxAttempts int    `json:"max_attempts"`
			Visibility  string `json:"visibility_timeout"`
		}
	}
	var list struct{ Queues []detail }
	e2eEventually(t, "jobs in the detailed list", func() bool {
		code, body := httpDo(t, "GET", base+"/api/v1/queues?detail=1", "", "", "")
		list = decodeJSON[struct{ Queues []detail }](t, body)
		return code == 200 && len(list.Queues) == 1
	})
	q := list.Queues[0]
	if q.Name != "jobs" || q.Ready != 1 || q.InFlight != 1 || q.OldestReadyAgeMs == nil || *q.OldestReadyAgeMs < 0 ||
		q.Counters == nil || q.Counters.Pushed != 2 || q.Counters.Popped != 1 || q.Policy != nil {
		t.Errorf("detailed entry = %+v (age %v, counters %+v)", q, q.OldestReadyAgeMs, q.Counters)
	}
	// A registry entry whose key is no list (WRONGTYPE) is listed with zero counts, not a failure.
	if err := e.Direct.Set(ctx, "notalist", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Direct.ZAdd(ctx, rdb.QueuesKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: "notalist"}).Err(); err != nil {
		t.Fatal(err)
	}
	code, body := httpDo(t, "GET", base+"/api/v1/queues?detail=1", "", "", "")
	if l := decodeJSON[struct{ Queues []detail }](t, body); code != 200 || len(l.Queues) != 2 || l.Queues[1].Name != "notalist" || l.Queues[1].Ready != 0 {
		t.Errorf("detailed list with a string key = %d %s", code, body)
	}
	_, body = httpDo(t, "GET", base+"/api/v1/queues", "", "", "")
	if strings.Contains(body, "oldest_ready_age_ms") || strings.Contains(body, "counters") {
		t.Errorf("plain list has detail fields: %s", body)
	}

	code, body = httpDo(t, "GET", base+"/api/v1/queues/jobs", "", "", "")
	one := decodeJSON[detail](t, body)
	if code != 200 || one.Policy == nil {
		t.Fatalf("GET /api/v1/queues/jobs = %d %s", code, body)
	}
	if got, want := *one.Policy, (struct {
		Match       string
		Delivery    string
		MaxAttempts int    `json:"max_attempts"`
		Visibility  string `json:"visibility_timeout"`
	}{"jobs*", "at-least-once", 3, "1m0s"}); got != want {
		t.Errorf("policy = %+v, want %+v", got, want)
	}

	code, body = httpDo(t, "GET", base+"/api/v1/status", "", "", "")
	st := decodeJSON[struct {
		Instance, Version, Backend string
		Auth                       bool
		ConnectedClients           int `json:"connected_clients"`
	}](t, body)
	if code != 200 || st.Instance == "" || st.Version != proxy.Version || st.Backend != "ok" || st.Auth || st.ConnectedClients != 1 {
		t.Errorf("status = %d %s", code, body)
	}
	e.Redis.Freeze()
	t.Cleanup(e.Redis.Thaw)
	code, body = httpDo(t, "GET", base+"/api/v1/status", "", "", "")
	if st := decodeJSON[struct{ Backend string }](t, body); code != 200 || st.Backend == "ok" || st.Backend == "" {
		t.Errorf("status while Redis is frozen = %d %s, want the backend's failure", code, body)
	}
}

func TestDashboard_RedriveFromDeadLetterPage(t *testing.T) {
	b := dashStartBrowser(t)
	rule := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: time.Hour, MaxAttempts: ptr(1),
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}
	e := e2eStart(t, httpOn, func(c *proxy.Config) { c.Queues = []policy.Rule{rule} })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	// The first payload is markup: the page must show it as text, never parse it.
	const payload = `<img src=x id=injected onerror="document.title='pwned'"><b>j1</b>`
	if err := c.RPush(ctx, "jobs", payload, "j2").Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		item, err := c.LPop(ctx, "jobs").Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Do(ctx, "qnack", "jobs", mustReceipt(t, item)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadAndReady := func() [2]int64 {
		return [2]int64{e.Direct.LLen(ctx, rdb.DeadKey("jobs")).Val(), e.Direct.LLen(ctx, "jobs").Val()}
	}
	if got, want := deadAndReady(), [2]int64{2, 0}; got != want {
		t.Fatalf("dead and ready after QNACK = %v, want %v", got, want)
	}

	base := httpBase(t, e.Qgate)
	b.do(t, "open the queue page", chromedp.Navigate(base+"/#/queue/jobs"), chromedp.WaitVisible(chromedp.CSS(`#dead tr[data-dead="0"]`)))
	if got, want := b.text(t, `#dead tr[data-dead="0"] pre.payload`), payload; got != want {
		t.Errorf("dead payload shown as %q, want the text %q", got, want)
	}
	if got, want := b.text(t, `#dead tr[data-dead="0"] td:nth-child(2)`), "nack"; got != want {
		t.Errorf("dead reason = %q, want %q", got, want)
	}
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#injected, #dead b").length`)); err != nil || n != 0 {
		t.Errorf("payload markup became %d elements (err %v)", n, err)
	}
	if rule := b.text(t, "#rule"); !strings.Contains(rule, "max_attempts: 1") || !strings.Contains(rule, `match: "jobs*"`) {
		t.Errorf("rule shown as %q", rule)
	}

	b.do(t, "purge, cancelled", chromedp.Click(chromedp.ID("purge")), chromedp.WaitVisible(chromedp.ID("confirm-cancel")),
		chromedp.Click(chromedp.ID("confirm-cancel")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	if got, want := deadAndReady(), [2]int64{2, 0}; got != want {
		t.Errorf("dead and ready after a cancelled purge = %v, want %v", got, want)
	}
	b.do(t, "redrive 1, confirmed", chromedp.SetValue(chromedp.ID("redrive-n"), "1"), chromedp.Click(chromedp.ID("redrive-some")),
		chromedp.WaitVisible(chromedp.ID("confirm-ok")), chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(`#dead tr[data-dead="1"]`)))
	if got, want := deadAndReady(), [2]int64{1, 1}; got != want {
		t.Errorf("dead and ready after redriving 1 = %v, want %v", got, want)
	}
	b.do(t, "redrive all, confirmed", chromedp.Click(chromedp.ID("redrive-all")), chromedp.WaitVisible(chromedp.ID("confirm-ok")),
		chromedp.Click(chromedp.ID("confirm-ok")), chromedp.WaitVisible(chromedp.ID("dead-empty")))
	if got, want := deadAndReady(), [2]int64{0, 2}; got != want {
		t.Errorf("dead and ready after redriving all = %v, want %v", got, want)
	}
	var back []string
	for range 2 {
		item, err := c.LPop(ctx, "jobs").Result()
		if err != nil {
			t.Fatalf("LPOP after redrive: %v", err)
		}
		back = append(back, string(mustDecode(t, item).Payload))
	}
	slices.Sort(back)
	if got, want := back, []string{payload, "j2"}; !slices.Equal(got, want) {
		t.Errorf("redriven payloads = %q, want %q", got, want)
	}
	if title, err := chromedp.Run(b.ctx, chromedp.Title()); err != nil || title == "pwned" {
		t.Errorf("title = %q (err %v): the payload ran as script", title, err)
	}
	b.noConsoleErrors(t)
}

func TestDashboard_NeedsCredentialsWhenUsersConfigured(t *testing.T) {
	b := dashStartBrowser(t)
	const pw = "admin-pw"
	e := e2eStart(t, httpOn, func(c *proxy.Config) {
		c.Users = []auth.UserConfig{{Name: "admin", PasswordHash: authHash(t, pw), Admin: []string{"*"}, Push: []string{"*"}}}
		c.AuthFailureDelay = time.Millisecond
		c.AuthFailureMaxDelay = time.Millisecond
	})
	base := httpBase(t, e.Qgate)
	var typed atomic.Bool // whether the person at the prompt types the credentials in
	challenges := b.answerLogins(t, func() (string, string, bool) { return "admin", pw, typed.Load() })

	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		t.Fatalf("open the dashboard, login prompt cancelled: %v", err)
	}
	if got, want := resp.Status, int64(401); got != want {
		t.Errorf("status without credentials = %d, want %d", got, want)
	}
	seen := challenges()
	if got, want := len(seen), 1; got != want {
		t.Fatalf("login prompts = %d, want %d", got, want)
	}
	if got, want := strings.ToLower(seen[0].Scheme)+" "+seen[0].Realm, "basic qgate"; got != want {
		t.Errorf("challenge = %q, want %q", got, want)
	}

	c := e.Client(t, 3, func(o *redis.Options) { o.Username, o.Password = "admin", pw })
	if err := c.RPush(e2eCtx(t), "orders", "x").Err(); err != nil {
		t.Fatal(err)
	}
	typed.Store(true)
	resp, err = chromedp.Run(b.ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		t.Fatalf("open the dashboard, credentials typed in: %v", err)
	}
	if got, want := resp.Status, int64(200); got != want {
		t.Errorf("status with credentials = %d, want %d", got, want)
	}
	b.do(t, "queues listed with credentials", chromedp.WaitVisible(dashRow("orders")))
	if got := b.text(t, "#status-text"); !strings.Contains(got, "user admin") || !strings.Contains(got, "backend ok") {
		t.Errorf("header = %q, want the user and the backend's state", got)
	}
}

// TestDashboard_Screenshot writes the README's screenshots (proxy/admin/testdata/dashboard.png and
// dashboard-queue.png) when QGATE_SCREENSHOT names the first file:
//
//	QGATE_SCREENSHOT=$PWD/proxy/admin/testdata/dashboard.png go test -run TestDashboard_Screenshot ./proxy/
func TestDashboard_Screenshot(t *testing.T) {
	out := os.Getenv("QGATE_SCREENSHOT")
	if out == "" {
		t.Skip("set QGATE_SCREENSHOT=<file.png> to write the dashboard's screenshots")
	}
	b := dashStartBrowser(t)
	rules := []policy.Rule{
		{Match: "jobs.email", Delivery: "at-least-once", VisibilityTimeout: 5 * time.Minute, MaxAttempts: ptr(1)},
		{Match: "jobs.*", Delivery: "at-least-once", VisibilityTimeout: 5 * time.Minute, MaxAttempts: ptr(5),
			Backoff: policy.Backoff{Initial: 10 * time.Minute, Max: time.Hour}},
	}
	e := e2eStart(t, httpOn, func(c *proxy.Config) { c.Queues = rules })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	fill := func(q string, n int, f func(i int) string) {
		t.Helper()
		vals := make([]any, n)
		for i := range vals {
			vals[i] = f(i)
		}
		if err := c.RPush(ctx, q, vals...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fill("orders", 12480, func(i int) string {
		return fmt.Sprintf(`{"order_id":%d,"sku":"A-%03d","qty":%d}`, 100000+i, i%500, 1+i%4)
	})
	fill("events.audit", 311, func(i int) string { return fmt.Sprintf(`{"event":"login","user":%d}`, i) })
	fill("jobs.email", 1830, func(i int) string {
		return fmt.Sprintf(`{"to":"user%d@example.com","template":"welcome","locale":"en"}`, i)
	})
	fill("jobs.thumbnails", 96, func(i int) string { return fmt.Sprintf(`{"image":"uploads/%04d.jpg","sizes":[64,256]}`, i) })
	// jobs.email: 7 dead letters (max_attempts 1, nacked) and 24 leased; jobs.thumbnails: 5 nacked
	// into backoff (delayed) and 12 leased.
	pop := func(q string, n int, nack bool) {
		t.Helper()
		for range n {
			item, err := c.LPop(ctx, q).Result()
			if err != nil {
				t.Fatal(err)
			}
			if nack {
				if err := c.Do(ctx, "qnack", q, mustReceipt(t, item)).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	pop("jobs.email", 7, true)
	pop("jobs.email", 24, false)
	pop("jobs.thumbnails", 5, true)
	pop("jobs.thumbnails", 12, false)

	// Traffic on orders while the page refreshes, so its rates show.
	w := e.Client(t, 3)
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = w.RPush(ctx, "orders", fmt.Sprintf(`{"order_id":%d}`, 200000+i), fmt.Sprintf(`{"order_id":%d}`, 300000+i)).Err()
			_ = w.LPop(ctx, "orders").Err()
		}
	}()

	base := httpBase(t, e.Qgate)
	b.do(t, "open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(dashRow("orders")))
	b.poll(t, `(() => { const td = document.querySelector('#queues tr[data-queue="orders"] td:nth-child(9)');
		return !!td && td.textContent !== "–" && td.textContent !== "0"; })()`)
	b.do(t, "fit the table", chromedp.EmulateViewport(1280, 440))
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	b.do(t, "open jobs.email", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(base+"/#/queue/jobs.email"), chromedp.WaitVisible(chromedp.CSS(`#dead tr[data-dead="6"]`)))
	b.poll(t, `document.querySelectorAll(".cards .card").length > 6`)
	png, err = chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(strings.TrimSuffix(out, ".png")+"-queue.png", png, 0o644); err != nil {
		t.Fatal(err)
	}
	b.noConsoleErrors(t)
}
