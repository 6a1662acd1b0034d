package proxy

import "time"

// SetLeasedQueueTTL shortens how long idle queues stay in the reapers' set, for tests.
func (s *Server) SetLeasedQueueTTL(d time.Duration) { s.leasedTTL = d }
