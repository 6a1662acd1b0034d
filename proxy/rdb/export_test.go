package rdb

// Sources returns the flagged and the plain source of s, for tests.
func (s *Script) Sources() (flagged, plain string) { return s.flagged.src, s.plain.src }
