package queue

// Queued returns the batches waiting for a leader (tests).
func (m *Mux) Queued() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue)
}

// LiveNode is liveNode (tests).
var LiveNode = liveNode
