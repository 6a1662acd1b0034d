package queue

import (
	"reflect"
	"strconv"
	"testing"
)

func TestConsumer_Leases(t *testing.T) {
	var s Consumer
	s.AddLeases("q", []string{"a", "b"}, true)
	s.AddLeases("q", []string{"c"}, true) // pipelined: the next pop acks all three
	s.AddLeases("r", []string{"x"}, false)
	if got := s.LastPop["q"]; !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("LastPop %v", got)
	}
	if _, ok := s.LastPop["r"]; ok {
		t.Fatal("explicit-ack queue in LastPop")
	}
	s.DropLeases("q", []string{"b"}) // QACK b
	if got := s.LastPop["q"]; !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Fatalf("LastPop after drop %v", got)
	}
	s.DropLeases("q", []string{"a", "c"})
	s.DropLeases("r", []string{"x"})
	if len(s.Held) != 0 || len(s.LastPop) != 0 {
		t.Fatalf("left: held %v last %v", s.Held, s.LastPop)
	}
	s.AddLeases("q", nil, true)
	if s.Held != nil && len(s.Held) != 0 {
		t.Fatal("empty add recorded something")
	}
	ids := make([]string, MaxHeldLeases+10)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	s.AddLeases("big", ids, false)
	if len(s.Held["big"]) != MaxHeldLeases {
		t.Fatalf("held %d, want the bound %d", len(s.Held["big"]), MaxHeldLeases)
	}
}
