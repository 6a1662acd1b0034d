package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
)

// The JSON API (README "Operations"). With users configured every call needs HTTP Basic
// credentials of a user with the admin right on the queue concerned; lists show only the queues the
// user may admin; /clients needs admin on every queue (an admin glob "*"), since it shows every
// user's connections.

func (s *Server) apiRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/queues", s.admin(false, s.listQueues))
	mux.Handle("GET /api/v1/queues/{name}", s.admin(true, s.getQueue))
	mux.Handle("GET /api/v1/queues/{name}/dead", s.admin(true, s.getDead))
	mux.Handle("POST /api/v1/queues/{name}/redrive", s.admin(true, s.redrive))
	mux.Handle("DELETE /api/v1/queues/{name}/dead", s.admin(true, s.purgeDead))
	mux.Handle("GET /api/v1/clients", s.admin(false, s.listClients))
	mux.Handle("GET /api/v1/status", s.admin(false, s.status))
}

// apiTimeout bounds the backend calls of one API request.
const apiTimeout = 10 * time.Second

// user is the authenticated user of a request (nil: qgate is open).
type userKey struct{}

func requestUser(r *http.Request) *auth.User {
	u, _ := r.Context().Value(userKey{}).(*auth.User)
	return u
}

// may reports whether the request's user has the admin right on queue (always, when qgate is open).
func may(r *http.Request, queue string) bool {
	u := requestUser(r)
	return u == nil || u.Allowed(auth.RightAdmin, queue)
}

// login checks the request's Basic credentials; ok false means the reply was written.
func (s *Server) login(w http.ResponseWriter, r *http.Request) (*auth.User, bool) {
	if !s.o.Source.Users().Required() {
		return nil, true
	}
	name, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="qgate", charset="UTF-8"`)
		httpError(w, http.StatusUnauthorized, "authentication required")
		return nil, false
	}
	u, res := s.o.Source.Login(r.Context(), name, pass, r.RemoteAddr)
	switch res {
	case auth.OK:
		return u, true
	case auth.Busy:
		httpError(w, http.StatusServiceUnavailable, "too many logins in progress")
	default:
		w.Header().Set("WWW-Authenticate", `Basic realm="qgate", charset="UTF-8"`)
		httpError(w, http.StatusUnauthorized, "invalid username-password pair or user is disabled")
	}
	return nil, false
}

// anyUser wraps h with a login of any configured user unless open.
func (s *Server) anyUser(open bool, h http.Handler) http.Handler {
	if open {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.login(w, r); ok {
			h.ServeHTTP(w, r)
		}
	})
}

// admin wraps an API handler: login, then (perQueue) a valid queue name and the admin right on it.
func (s *Server) admin(perQueue bool, h func(w http.ResponseWriter, r *http.Request, queue string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.login(w, r)
		if !ok {
			return
		}
		if u != nil {
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
		}
		name := ""
		if perQueue {
			name = r.PathValue("name")
			if err := policy.ValidateName("queue", name, false); err != nil {
				httpError(w, http.StatusBadRequest, err.Error())
				return
			}
			if !may(r, name) {
				httpError(w, http.StatusForbidden, "user has no admin right on queue "+strconv.Quote(name))
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
		defer cancel()
		h(w, r.WithContext(ctx), name)
	})
}

// QueueInfo is one queue in the API.
type QueueInfo struct {
	Name     string     `json:"name"`
	Ready    int64      `json:"ready"`
	InFlight int64      `json:"in_flight"`
	Delayed  int64      `json:"delayed"`
	Dead     int64      `json:"dead"`
	Paused   bool       `json:"paused"`   // QPAUSE (README "Queue controls")
	Delivery string     `json:"delivery"` // at-most-once | at-least-once
	Rule     string     `json:"rule"`
	LastSeen *time.Time `json:"last_seen,omitempty"` // when an instance last noted it in the registry

	// Detail only.
	Handoff          *int64             `json:"handoff,omitempty"`
	OldestReadyAgeMs *int64             `json:"oldest_ready_age_ms,omitempty"`
	Counters         *queue.QueueCounts `json:"counters,omitempty"` // this instance's, since it started
	Policy           *RuleInfo          `json:"policy,omitempty"`   // GET /api/v1/queues/{name} only
}

// RuleInfo is the effective rule of a queue (README "Queue rules"), defaults filled in; durations
// are Go duration strings ("30s").
type RuleInfo struct {
	Match             string  `json:"match"`
	MaxBytes          int64   `json:"max_bytes"`
	Format            string  `json:"format"`
	Schema            string  `json:"schema,omitempty"`
	Envelope          bool    `json:"envelope"`
	Deliver           string  `json:"deliver"`
	Dedup             string  `json:"dedup"` // off | body | a JSON pointer
	DedupWindow       string  `json:"dedup_window,omitempty"`
	Delivery          string  `json:"delivery"`
	Ack               string  `json:"ack,omitempty"`
	VisibilityTimeout string  `json:"visibility_timeout,omitempty"`
	MaxAttempts       int     `json:"max_attempts,omitempty"`
	BackoffInitial    string  `json:"backoff_initial,omitempty"`
	BackoffMax        string  `json:"backoff_max,omitempty"`
	BackoffMultiplier float64 `json:"backoff_multiplier,omitempty"`
	BackoffJitter     float64 `json:"backoff_jitter,omitempty"`
	DeadLetter        *bool   `json:"dead_letter,omitempty"`
	MaxLength         int64   `json:"max_length,omitempty"` // README "Queue controls"
	Overflow          string  `json:"overflow,omitempty"`
	Delay             string  `json:"delay,omitempty"`
}

func ruleInfo(p *policy.Policy) *RuleInfo {
	ri := &RuleInfo{Match: p.Match, MaxBytes: p.MaxBytes, Format: "any", Schema: p.SchemaName, Envelope: p.Envelope,
		Deliver: "payload", Dedup: "off", Delivery: "at-most-once"}
	if p.JSON {
		ri.Format = "json"
	}
	if p.DeliverEnvelope {
		ri.Deliver = "envelope"
	}
	switch {
	case p.DedupBody:
		ri.Dedup = "body"
	case p.DedupPointer != "":
		ri.Dedup = p.DedupPointer
	}
	if p.Dedup() {
		ri.DedupWindow = p.DedupWindow.String()
	}
	if p.MaxLength > 0 {
		ri.MaxLength, ri.Overflow = p.MaxLength, "reject"
		if p.DropOldest {
			ri.Overflow = "drop-oldest"
		}
	}
	if p.Delay > 0 {
		ri.Delay = p.Delay.String()
	}
	if p.AtLeastOnce {
		dl := p.DeadLetter
		ri.Delivery, ri.Ack, ri.VisibilityTimeout, ri.MaxAttempts = "at-least-once", "explicit", p.VisibilityTimeout.String(), p.MaxAttempts
		if p.AckNextPop {
			ri.Ack = "next-pop"
		}
		ri.BackoffInitial, ri.BackoffMax = p.BackoffInitial.String(), p.BackoffMax.String()
		ri.BackoffMultiplier, ri.BackoffJitter, ri.DeadLetter = p.BackoffMultiplier, p.BackoffJitter, &dl
	}
	return ri
}

func (s *Server) info(name string, st queue.QueueStats, seen time.Time) QueueInfo {
	p := s.o.Source.Policies().Queue(name)
	qi := QueueInfo{Name: name, Ready: st.Ready, InFlight: st.InFlight, Delayed: st.Delayed, Dead: st.Dead,
		Paused: st.Paused, Delivery: "at-most-once", Rule: p.Name()}
	if p.AtLeastOnce {
		qi.Delivery = "at-least-once"
	}
	if !seen.IsZero() {
		qi.LastSeen = &seen
	}
	return qi
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request, _ string) {
	e := s.o.Source.Queues()
	known, err := e.KnownQueues(r.Context())
	if err != nil {
		backendFailure(w, err)
		return
	}
	names := make([]string, 0, len(known))
	for _, q := range queue.SortedQueues(known) {
		if may(r, q) {
			names = append(names, q)
		}
	}
	if r.URL.Query().Get("detail") == "1" {
		out, err := s.details(r.Context(), names, known)
		if err != nil {
			backendFailure(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"queues": out})
		return
	}
	stats, err := e.SampleQueues(r.Context(), names)
	if err != nil {
		backendFailure(w, err)
		return
	}
	out := make([]QueueInfo, 0, len(names))
	for _, q := range names {
		out = append(out, s.info(q, stats[q], known[q]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": out})
}

// detailChunk bounds the queues of one backend pipeline of a ?detail=1 listing.
const detailChunk = 128

// details is GET /api/v1/queues?detail=1 (the dashboard's table, proxy/DESIGN.md "Dashboard"):
// each entry with the detail fields of GET /api/v1/queues/{name}. A queue whose counts Redis refuses
// (e.g. WRONGTYPE: a key of that name that is no list) is listed with zero counts, as in the plain
// listing; a transport failure or the request's deadline fails the whole listing.
func (s *Server) details(ctx context.Context, names []string, known map[string]time.Time) ([]QueueInfo, error) {
	e := s.o.Source.Queues()
	counts := e.QueueCounts()
	out := make([]QueueInfo, 0, len(names))
	for start := 0; start < len(names) && ctx.Err() == nil; start += detailChunk {
		chunk := names[start:min(start+detailChunk, len(names))]
		ops := make([]*queue.Result[queue.QueueStats], len(chunk))
		batch := make([]queue.Queued, len(chunk))
		for i, q := range chunk {
			ops[i] = e.QueueStats(q)
			batch[i] = ops[i]
		}
		e.Run(batch)
		for i, q := range chunk {
			st, err := ops[i].Result()
			var reply interface{ RedisError() } // an error reply from Redis, as against a transport failure
			switch {
			case err == nil:
			case errors.As(err, &reply):
				st = queue.QueueStats{OldestReadyAgeMs: -1}
			default:
				return nil, fmt.Errorf("list queues: %w", err)
			}
			qi := s.info(q, st, known[q])
			qi.Handoff, qi.OldestReadyAgeMs = &st.Handoff, &st.OldestReadyAgeMs
			if c, ok := counts[q]; ok {
				qi.Counters = &c
			}
			out = append(out, qi)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return out, nil
}

// Status is GET /api/v1/status: this instance and its backend, for the dashboard's header.
type Status struct {
	Instance         string    `json:"instance"`
	Version          string    `json:"version"`
	Started          time.Time `json:"started"`
	UptimeSeconds    float64   `json:"uptime_seconds"`
	Backend          string    `json:"backend"` // "ok", or why not (as /readyz says)
	ShuttingDown     bool      `json:"shutting_down"`
	ConnectedClients int       `json:"connected_clients"`
	KnownQueues      int64     `json:"known_queues"`
	Auth             bool      `json:"auth"` // users are configured
	User             string    `json:"user,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, _ string) {
	st := s.o.Source.Stats()
	backend := "ok"
	if err := s.ready.ping(r.Context()); err != nil {
		backend = err.Error()
	}
	writeJSON(w, http.StatusOK, Status{Instance: st.Instance, Version: st.Version, Started: st.Started,
		UptimeSeconds: time.Since(st.Started).Seconds(), Backend: backend, ShuttingDown: s.o.Source.ShuttingDown(),
		ConnectedClients: st.ConnectedClients, KnownQueues: st.KnownQueues, Auth: s.o.Source.Users().Required(),
		User: userName(r)})
}

func (s *Server) getQueue(w http.ResponseWriter, r *http.Request, name string) {
	e := s.o.Source.Queues()
	op := e.QueueStats(name)
	e.Run([]queue.Queued{op})
	st, err := op.Result()
	if err != nil {
		backendFailure(w, err)
		return
	}
	known, _ := e.KnownQueues(r.Context())
	qi := s.info(name, st, known[name])
	qi.Handoff, qi.OldestReadyAgeMs = &st.Handoff, &st.OldestReadyAgeMs
	if c, ok := e.QueueCounts()[name]; ok {
		qi.Counters = &c
	}
	qi.Policy = ruleInfo(s.o.Source.Policies().Queue(name))
	writeJSON(w, http.StatusOK, qi)
}

// DeadLetter is a decoded dead record (README "Retry rules").
type DeadLetter struct {
	Reason   string          `json:"reason"`
	FailedAt json.RawMessage `json:"failed_at,omitempty"`
	Attempts int             `json:"attempts"`
	// The item: decoded when it is an envelope, else raw.
	ID             string `json:"id,omitempty"`
	EnqueuedAt     string `json:"enqueued_at,omitempty"`
	Producer       string `json:"producer,omitempty"`
	Payload        string `json:"payload"`
	PayloadEncoded string `json:"payload_encoding,omitempty"` // "base64" when the payload is not UTF-8
	Raw            string `json:"raw,omitempty"`              // a record that is not qgate's JSON, as stored
}

func decodeDead(rec string) DeadLetter {
	var w struct {
		Reason   string          `json:"reason"`
		FailedAt json.RawMessage `json:"failed_at"`
		Attempts int             `json:"attempts"`
		Item     string          `json:"item"`
	}
	if err := json.Unmarshal([]byte(rec), &w); err != nil {
		return DeadLetter{Raw: rec}
	}
	d := DeadLetter{Reason: w.Reason, FailedAt: w.FailedAt, Attempts: w.Attempts}
	payload := []byte(w.Item)
	if env, ok := envelope.Decode(payload); ok {
		d.ID, d.Producer, payload = env.ID, env.Producer, env.Payload
		d.EnqueuedAt = env.EnqueuedAt.UTC().Format(envelope.TimeFormat)
	}
	if utf8.Valid(payload) {
		d.Payload = string(payload)
	} else {
		d.Payload, d.PayloadEncoded = base64.StdEncoding.EncodeToString(payload), "base64"
	}
	return d
}

// maxDeadPage bounds ?count= of the dead letters' listing.
const maxDeadPage = 1000

func (s *Server) getDead(w http.ResponseWriter, r *http.Request, name string) {
	n := int64(10)
	if v := r.URL.Query().Get("count"); v != "" {
		c, err := strconv.ParseInt(v, 10, 64)
		if err != nil || c < 1 || c > maxDeadPage {
			httpError(w, http.StatusBadRequest, "count must be 1-"+strconv.Itoa(maxDeadPage))
			return
		}
		n = c
	}
	e := s.o.Source.Queues()
	op := e.Dead(name, n)
	e.Run([]queue.Queued{op})
	recs, err := op.Result()
	if err != nil {
		backendFailure(w, err)
		return
	}
	out := make([]DeadLetter, 0, len(recs))
	for _, rec := range recs {
		out = append(out, decodeDead(rec))
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue": name, "dead": out})
}

func (s *Server) redrive(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Count *int64 `json:"count"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		httpError(w, http.StatusBadRequest, "body must be JSON {\"count\": N} or empty: "+err.Error())
		return
	}
	n := int64(math.MaxInt64)
	if body.Count != nil {
		if *body.Count < 1 {
			httpError(w, http.StatusBadRequest, "count must be >= 1")
			return
		}
		n = *body.Count
	}
	e := s.o.Source.Queues()
	op := e.RedriveVia(name, n, "http")
	e.Run([]queue.Queued{op})
	moved, err := op.Result()
	if err != nil {
		backendFailure(w, err)
		return
	}
	s.sampler.Kick()
	writeJSON(w, http.StatusOK, map[string]any{"queue": name, "redriven": moved})
}

func (s *Server) purgeDead(w http.ResponseWriter, r *http.Request, name string) {
	n, err := s.o.Source.Queues().PurgeDead(r.Context(), name)
	if err != nil {
		backendFailure(w, err)
		return
	}
	s.o.Log.Info("dead letters purged over HTTP", "queue", name, "items", n, "user", userName(r), "addr", r.RemoteAddr)
	s.sampler.Kick()
	writeJSON(w, http.StatusOK, map[string]any{"queue": name, "purged": n})
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request, _ string) {
	if !may(r, "*") {
		httpError(w, http.StatusForbidden, "listing clients needs the admin right on every queue (admin: [\"*\"])")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": s.o.Source.Clients()})
}

func userName(r *http.Request) string {
	if u := requestUser(r); u != nil {
		return u.Name
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func backendFailure(w http.ResponseWriter, err error) {
	httpError(w, http.StatusBadGateway, "backend: "+err.Error())
}
