// Package ratelog bounds log lines per event kind (README "Operations", "Logs"): at most Burst lines
// per Interval for each kind, then one "suppressed similar lines" summary when the interval ends.
// golang.org/x/time/rate bounds the rate but does not count what it dropped, which the summary
// needs; a fixed window per kind does both in a few lines.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Default budget: 10 lines per second per kind.
const (
	DefaultBurst    = 10
	DefaultInterval = time.Second
)

// Limiter lets through at most Burst lines per Interval for each kind.
type Limiter struct {
	log      *slog.Logger
	burst    int
	interval time.Duration

	mu    sync.Mutex
	kinds map[string]*window // keyed by the event's message: a fixed set of constants
}

type window struct {
	start      time.Time
	n          int  // lines in the window
	suppressed int  // lines dropped in the window
	flushing   bool // a summary is scheduled for the window's end
}

// New returns a limiter writing to log; burst ≤ 0 or interval ≤ 0 take the defaults.
func New(log *slog.Logger, burst int, interval time.Duration) *Limiter {
	if burst <= 0 {
		burst = DefaultBurst
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Limiter{log: log, burst: burst, interval: interval, kinds: map[string]*window{}}
}

// Log writes msg with args at level unless msg's kind used up its budget for the current interval.
// The kind is the message itself, which must be a constant (the map of kinds stays bounded).
func (l *Limiter) Log(level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	w := l.kinds[msg]
	if w == nil {
		w = &window{start: now}
		l.kinds[msg] = w
	}
	if now.Sub(w.start) >= l.interval && !w.flushing {
		w.start, w.n = now, 0
	}
	if w.n >= l.burst {
		w.suppressed++
		if !w.flushing {
			w.flushing = true
			time.AfterFunc(l.interval-now.Sub(w.start), func() { l.flush(level, msg) })
		}
		l.mu.Unlock()
		return
	}
	w.n++
	l.mu.Unlock()
	l.log.Log(context.Background(), level, msg, args...)
}

// flush writes the summary of a window's dropped lines and starts a new window.
func (l *Limiter) flush(level slog.Level, msg string) {
	l.mu.Lock()
	w := l.kinds[msg]
	n := w.suppressed
	w.suppressed, w.flushing, w.start, w.n = 0, false, time.Now(), 0
	l.mu.Unlock()
	l.log.Log(context.Background(), level, "suppressed similar lines", "event", msg, "lines", n)
}
