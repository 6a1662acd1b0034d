package proxy

import "time"

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
