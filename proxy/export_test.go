package proxy

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// SetLeasedQueueTTL shortens how long idle queues stay in the reapers' set, for tests.
func (s *Server) SetLeasedQueueTTL(d time.Duration) { s.engine.SetLeasedQueueTTL(d) }

// EmbeddedPassword returns the random password of the embedded backend ("" for other backends).
func (s *Server) EmbeddedPassword() string {
	if s.backend.Kind != BackendEmbedded {
		return ""
	}
	return s.backend.opts.Password
}

// BcryptPeak is the most bcrypt comparisons that ran at once.
func (s *Server) BcryptPeak() int64 { return s.auth.BcryptPeak() }

// SetLoginWait sets how long a login waits for its turn to run bcrypt; call it before any login.
func (s *Server) SetLoginWait(d time.Duration) { s.auth.MaxWait = d }

// SetScheduleRecheck shortens when the reapers look again at an idle (or far) queue, for tests.
func (s *Server) SetScheduleRecheck(d time.Duration) { s.engine.SetScheduleRecheck(d) }

// SetDeleteIdle sets how long delivered pops' transit fields wait before the delete loop deletes them.
func (s *Server) SetDeleteIdle(d time.Duration) { s.engine.SetDeleteIdle(d) }

// DeadInstanceWalks returns the engine's finished walks of every registered queue (reaper.go).
func (s *Server) DeadInstanceWalks() int64 { return s.engine.DeadInstanceWalks() }

// SentinelGuard is the Sentinel switch-over guard, for tests (backend_sentinel.go).
type SentinelGuard = sentinelGuard

// NewSentinelGuard sets up o to dial through a new guard whose event subscriptions are not started.
func NewSentinelGuard(o *redis.UniversalOptions) *SentinelGuard { return newSentinelGuard(o) }

// Open reports the guard's open connections to addr.
func (g *sentinelGuard) Open(addr string) int { return g.open(addr) }

// Event feeds the guard one Sentinel event.
func (g *sentinelGuard) Event(channel, payload string) { g.event(channel, payload) }

// ReadonlyHook is the hook that reports READONLY replies to g.
func (g *sentinelGuard) ReadonlyHook() redis.Hook { return readonlyHook{g} }

// ErrFenced is the dial error while fenced.
var ErrFenced = errFenced

// NewBackendClient is newBackendClient (tests).
var NewBackendClient = newBackendClient

// ClusterSlotsOf returns the slot-map loader newBackendClient gave a Cluster client built from opts
// (tests): the same kind of loader, knowing the seeds and the nodes of the returned client.
func ClusterSlotsOf(opts *redis.UniversalOptions) (func(context.Context) ([]redis.ClusterSlot, error), redis.UniversalClient) {
	c := newBackendClient(opts, 0)
	return c.(*redis.ClusterClient).Options().ClusterSlots, c
}
