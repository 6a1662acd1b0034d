package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
)

// fakeSource is a Source without a backend (handlers that reach the engine are not called).
type fakeSource struct{ closing bool }

func (f fakeSource) Queues() *queue.Engine { return nil }
func (f fakeSource) Policies() *policy.Set { return nil }
func (f fakeSource) Users() *auth.Store    { return nil }
func (f fakeSource) Login(context.Context, string, string, string) (*auth.User, auth.Result) {
	return nil, auth.Failed
}
func (f fakeSource) Stats() commands.Stats { return commands.Stats{ConnectedClients: 3, LostItems: 0} }
func (f fakeSource) Clients() []Client     { return nil }
func (f fakeSource) ShuttingDown() bool    { return f.closing }

func TestReadyz_ShuttingDownIs503(t *testing.T) {
	s := New(Options{Source: fakeSource{closing: true}})
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if got, want := rec.Code, http.StatusServiceUnavailable; got != want {
		t.Fatalf("status %d, want %d", got, want)
	}
	if got := rec.Body.String(); !strings.Contains(got, "shutting down") {
		t.Errorf("body %q does not say why", got)
	}
}

func TestHealthz_OK(t *testing.T) {
	s := New(Options{Source: fakeSource{}})
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if got, want := rec.Code, http.StatusOK; got != want {
		t.Fatalf("status %d, want %d", got, want)
	}
	rec = httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/healthz", nil))
	if got, want := rec.Code, http.StatusMethodNotAllowed; got != want {
		t.Errorf("POST: status %d, want %d", got, want)
	}
}

func TestFoldQueues_PastCapIsOther(t *testing.T) {
	in := map[string]queue.QueueStats{"a": {Ready: 1}, "b": {Ready: 2, Dead: 1}, "c": {Ready: 4, InFlight: 2}, "d": {Ready: 8, Delayed: 3}}
	got := foldQueues(in, 2)
	want := map[string]queue.QueueStats{"a": {Ready: 1}, "b": {Ready: 2, Dead: 1}, queue.OtherQueue: {Ready: 12, InFlight: 2, Delayed: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("foldQueues = %v, want %v", got, want)
	}
	if got := foldQueues(in, 0); len(got) != 1 || got[queue.OtherQueue].Ready != 15 {
		t.Errorf("cap 0: %v", got)
	}
}

func TestDecodeDead_RecordAndRaw(t *testing.T) {
	d := decodeDead(`{"reason":"nack","failed_at":1700000000000,"attempts":3,"item":"plain"}`)
	if got, want := d, (DeadLetter{Reason: "nack", FailedAt: []byte("1700000000000"), Attempts: 3, Payload: "plain"}); !reflect.DeepEqual(got, want) {
		t.Errorf("decodeDead = %+v, want %+v", got, want)
	}
	if got, want := decodeDead("not json").Raw, "not json"; got != want {
		t.Errorf("raw = %q, want %q", got, want)
	}
	if got := decodeDead(`{"reason":"x","attempts":1,"item":"\u00ff\u00fe"}`); got.Payload == "" {
		t.Errorf("payload lost: %+v", got)
	}
}

// qgate_commands_total is read from the server's command counters at scrape time (Totals; the
// e2e HTTP test checks it); a command's series is its latency histogram.
func TestCommandSeries_ObservesLatency(t *testing.T) {
	m := NewMetrics()
	s := m.Commands.Series("lpop")
	if m.Commands.Series("lpop") != s {
		t.Fatal("Series not cached")
	}
	s.Observe(1000)
	s.Observe(1000)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	for _, mf := range mfs {
		if mf.GetName() == "qgate_command_duration_seconds" {
			for _, x := range mf.GetMetric() {
				count += x.GetHistogram().GetSampleCount()
			}
		}
	}
	if got, want := count, uint64(2); got != want {
		t.Errorf("latency samples = %d, want %d", got, want)
	}
}
