package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/proxy/auth"
)

// usersSource is a fakeSource with users: "ops" (admin on jobs*) and "worker" (pop only), both with
// password "pw".
type usersSource struct {
	fakeSource
	store *auth.Store
}

func (u usersSource) Users() *auth.Store { return u.store }
func (u usersSource) Login(_ context.Context, name, pass, _ string) (*auth.User, auth.Result) {
	if usr := u.store.Lookup(name); usr != nil && pass == "pw" {
		return usr, auth.OK
	}
	return nil, auth.Failed
}

func newUsersSource(t *testing.T) usersSource {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore([]auth.UserConfig{
		{Name: "ops", PasswordHash: string(h), Admin: []string{"jobs*"}},
		{Name: "worker", PasswordHash: string(h), Pop: []string{"*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return usersSource{store: st}
}

func serve(s *Server, method, path, user, pass string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, req)
	return rec
}

func TestDashboard_ServesEmbeddedFilesWithCSP(t *testing.T) {
	s := New(Options{Source: fakeSource{}})
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script src="/ui/app.js"`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "textContent"},
		{"/ui/style.css", "text/css; charset=utf-8", "prefers-color-scheme"},
	} {
		rec := serve(s, "GET", tc.path, "", "")
		if got, want := rec.Code, http.StatusOK; got != want {
			t.Fatalf("GET %s: status %d, want %d", tc.path, got, want)
		}
		if got, want := rec.Header().Get("Content-Type"), tc.ctype; got != want {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, want)
		}
		if got, want := rec.Header().Get("Content-Security-Policy"), dashboardCSP; got != want {
			t.Errorf("GET %s: CSP %q, want %q", tc.path, got, want)
		}
		if !strings.Contains(dashboardCSP, "default-src 'self'") || strings.Contains(dashboardCSP, "unsafe") {
			t.Errorf("CSP %q is not strict", dashboardCSP)
		}
		if got, want := rec.Header().Get("X-Content-Type-Options"), "nosniff"; got != want {
			t.Errorf("GET %s: X-Content-Type-Options %q, want %q", tc.path, got, want)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
}

func TestDashboard_UnknownPathsAre404(t *testing.T) {
	s := New(Options{Source: fakeSource{}})
	for _, p := range []string{"/ui/nope.js", "/ui/", "/index.html", "/ui/.hidden", "/nope"} {
		if got, want := serve(s, "GET", p, "", "").Code, http.StatusNotFound; got != want {
			t.Errorf("GET %s: status %d, want %d", p, got, want)
		}
	}
	if got, want := serve(s, "POST", "/", "", "").Code, http.StatusMethodNotAllowed; got != want {
		t.Errorf("POST /: status %d, want %d", got, want)
	}
}

func TestDashboard_NeedsAdminUserWhenUsersConfigured(t *testing.T) {
	s := New(Options{Source: newUsersSource(t)})
	for _, tc := range []struct {
		path, user, pass string
		want             int
	}{
		{"/", "", "", http.StatusUnauthorized},
		{"/ui/app.js", "", "", http.StatusUnauthorized},
		{"/", "ops", "wrong", http.StatusUnauthorized},
		{"/", "worker", "pw", http.StatusForbidden},
		{"/ui/style.css", "worker", "pw", http.StatusForbidden},
		{"/", "ops", "pw", http.StatusOK},
		{"/ui/app.js", "ops", "pw", http.StatusOK},
	} {
		rec := serve(s, "GET", tc.path, tc.user, tc.pass)
		if got, want := rec.Code, tc.want; got != want {
			t.Errorf("GET %s as %q/%q: status %d, want %d", tc.path, tc.user, tc.pass, got, want)
		}
		if tc.want == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("GET %s as %q: 401 without a Basic challenge (the browser would not prompt)", tc.path, tc.user)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != dashboardCSP {
			t.Errorf("GET %s as %q: CSP %q on a %d", tc.path, tc.user, got, rec.Code)
		}
	}
}
