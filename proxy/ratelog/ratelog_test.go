package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type safeBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func count(s, sub string) int { return strings.Count(s, sub) }

func TestLog_RateLimitSuppressesThenSummarises(t *testing.T) {
	var buf safeBuf
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 3, 200*time.Millisecond)
	for i := 0; i < 10; i++ {
		l.Log(slog.LevelInfo, "push rejected", "queue", "q")
	}
	l.Log(slog.LevelInfo, "leases expired", "queue", "q") // another kind has its own budget
	if got, want := count(buf.String(), `msg="push rejected"`), 3; got != want {
		t.Fatalf("%d push rejected lines, want %d:\n%s", got, want, buf.String())
	}
	if got, want := count(buf.String(), `msg="leases expired"`), 1; got != want {
		t.Fatalf("%d leases expired lines, want %d", got, want)
	}
	// The summary comes when the window ends, without another line to carry it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), `msg="suppressed similar lines" event="push rejected" lines=7`) {
		if time.Now().After(deadline) {
			t.Fatalf("no summary of the 7 suppressed lines:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new window lets lines through again.
	l.Log(slog.LevelInfo, "push rejected", "queue", "q")
	if got, want := count(buf.String(), `msg="push rejected"`), 4; got != want {
		t.Fatalf("%d push rejected lines after the window, want %d", got, want)
	}
}

func TestLog_RateLimitSkipsDisabledLevels(t *testing.T) {
	var buf safeBuf
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), 1, time.Hour)
	for i := 0; i < 5; i++ {
		l.Log(slog.LevelInfo, "push rejected")
	}
	l.Log(slog.LevelWarn, "push rejected")
	if got, want := count(buf.String(), `msg="push rejected"`), 1; got != want {
		t.Fatalf("%d lines, want %d (info is off, so it uses no budget):\n%s", got, want, buf.String())
	}
}
