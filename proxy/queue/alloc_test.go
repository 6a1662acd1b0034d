package queue

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// The hot path's allocations (DESIGN.md "Allocation on the hot path"): preparing an at-most-once pop
// or a plain push of one value allocates the operation in one object, plus the few values that must
// live on their own. A change that brings back a closure, a separate Result or an argument slice per
// operation fails here.

func TestPop_PreparingAllocatesTheOperationOnce(t *testing.T) {
	e := newEngineOn(t, miniredis.RunT(t), "a", 10*time.Second, true)
	e.push(t, "q", "1") // registers the queue: later pops skip the registration's script
	allocs := testing.AllocsPerRun(2000, func() {
		if r := e.Pop("q", true, -1); r.op().pop == nil {
			t.Fatal("no transit pop")
		}
	})
	// popOp, the pop's field string and its boxed script argument (before: 5, with a transitPop, a
	// closure and a Result of their own).
	if got, want := allocs, 3.0; got > want {
		t.Fatalf("Engine.Pop allocates %.1f objects, want at most %.0f", got, want)
	}
}

func TestPush_PreparingAPlainPushAllocatesTheOperationOnce(t *testing.T) {
	e := newEngineOn(t, miniredis.RunT(t), "a", 10*time.Second, true)
	vals := [][]byte{[]byte("x")}
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := e.Push("q", false, "", vals); err != nil {
			t.Fatal(err)
		}
	})
	// pushOp, the queue and the value boxed as command arguments, the rule lookup (before: 8, with an
	// argument slice, an IntCmd, a command slice, a closure and a Result of their own).
	if got, want := allocs, 4.0; got > want {
		t.Fatalf("Engine.Push allocates %.1f objects, want at most %.0f", got, want)
	}
}
