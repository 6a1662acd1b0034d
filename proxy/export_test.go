package proxy

import "time"

// SetLeasedQueueTTL shortens how long idle queues stay in the reapers' set, for tests.
func (s *Server) SetLeasedQueueTTL(d time.Duration) { s.leasedTTL = d }

// EmbeddedPassword returns the random password of the embedded backend ("" for other backends).
func (s *Server) EmbeddedPassword() string {
	if s.backend.Kind != BackendEmbedded {
		return ""
	}
	return s.backend.opts.Password
}
