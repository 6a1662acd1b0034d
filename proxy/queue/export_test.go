package queue

// Queued returns the batches waiting for a leader (tests).
func (m *Mux) Queued() int {
	n := 0
	for _, l := range m.allLanes() {
		l.mu.Lock()
		n += len(l.queue)
		l.mu.Unlock()
	}
	return n
}

func (m *Mux) allLanes() []*muxLane {
	m.lanesMu.Lock()
	defer m.lanesMu.Unlock()
	out := []*muxLane{&m.lane}
	for _, l := range m.lanes {
		out = append(out, l)
	}
	return out
}

// LiveNode is liveNode (tests).
var LiveNode = liveNode
