package telemetry

// AcceptFailed counts one accept of a client connection that failed for
// want of a resource (file descriptors, memory) and is tried again.
func (m *Metrics) AcceptFailed() { m.acceptErrs.Inc() }
