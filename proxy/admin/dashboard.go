package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// The dashboard (README "Dashboard", proxy/DESIGN.md "Dashboard"): static files embedded in the
// binary, served on GET / and GET /ui/*, which read everything they show from the JSON API. They
// need the same credentials as the API (a user with an admin right, when users are configured) and
// are served with a strict Content-Security-Policy: scripts, styles and requests from this origin
// only, no inline script or style, no frames.

//go:embed ui
var uiFiles embed.FS

// dashboardCSP is the dashboard's Content-Security-Policy.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	ui, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	mux.Handle("GET /{$}", s.dashboard(func(w http.ResponseWriter, r *http.Request) {
		serveUI(w, r, ui, "index.html")
	}))
	mux.Handle("GET /ui/{file}", s.dashboard(func(w http.ResponseWriter, r *http.Request) {
		serveUI(w, r, ui, r.PathValue("file"))
	}))
}

// dashboard wraps a dashboard handler: security headers, then (users configured) a login of a user
// with an admin right on some queue; the API checks each queue itself.
func (s *Server) dashboard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", dashboardCSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-cache")
		u, ok := s.login(w, r)
		if !ok {
			return
		}
		if u != nil && !u.IsAdmin() {
			httpError(w, http.StatusForbidden, "the dashboard needs a user with an admin right")
			return
		}
		h(w, r)
	})
}

// serveUI serves one embedded file (no directory listings, no other paths).
func serveUI(w http.ResponseWriter, r *http.Request, ui fs.FS, name string) {
	if name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(ui, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	_, _ = w.Write(b)
}
