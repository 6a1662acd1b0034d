package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy/policy"
)

// Moves and multi-pops on the engine (move.go): LMOVE as stored, blocking moves through the wait
// hub, multi-pops through the transit record or leases.

var rawAndLeased = []policy.Rule{{Match: "alo*", Delivery: "at-least-once", VisibilityTimeout: time.Minute}, {Match: "*", Envelope: new(bool)}}

func (e *testEngine) lrange(t *testing.T, key string) string {
	t.Helper()
	got, err := e.client.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(got, ",")
}

// blocked waits until n clients are blocked in the engine.
func (e *testEngine) blocked(t *testing.T, n int) {
	t.Helper()
	waitFor(t, "blocked clients", func() bool { return e.Stats().Blocked == n })
}

func TestMove_EnvelopesMoveAsStoredAndRotationWorks(t *testing.T) {
	e := newTestEngine(t, nil, 0)
	e.push(t, "src", "a", "b")
	stored := e.client.LIndex(context.Background(), "src", 0).Val()
	v, err := run(e, e.Move("src", "dst", true, false))
	if err != nil || v == nil || *v != stored {
		t.Fatalf("Move = %v, %v; want the stored envelope %q", v, err, stored)
	}
	if got := e.client.LIndex(context.Background(), "dst", 0).Val(); got != stored {
		t.Fatalf("dst holds %q, want %q", got, stored)
	}
	// Rotation.
	e.client.RPush(context.Background(), "rot", "1", "2", "3")
	if v, err := run(e, e.Move("rot", "rot", true, false)); err != nil || v == nil || *v != "1" {
		t.Fatalf("rotation Move = %v, %v", v, err)
	}
	if got, want := e.lrange(t, "rot"), "2,3,1"; got != want {
		t.Fatalf("rot = %s, want %s", got, want)
	}
	if v, err := run(e, e.Move("none", "dst", true, true)); err != nil || v != nil {
		t.Fatalf("Move from an empty list = %v, %v; want nil", v, err)
	}
}

func TestMove_BlockMoveTakesWhenPushed(t *testing.T) {
	e := newTestEngine(t, rawAndLeased, 0)
	type res struct {
		v   *string
		err error
	}
	done := make(chan res, 1)
	go func() {
		v, err := e.BlockMove("bsrc", "bdst", false, true, 5*time.Second, &chanParker{})
		done <- res{v, err}
	}()
	e.blocked(t, 1)
	e.client.RPush(context.Background(), "bsrc", "x", "y") // straight into Redis
	r := <-done
	if r.err != nil || r.v == nil || *r.v != "y" {
		t.Fatalf("BlockMove = %v, %v; want y", r.v, r.err)
	}
	if got, want := e.lrange(t, "bsrc")+"|"+e.lrange(t, "bdst"), "x|y"; got != want {
		t.Fatalf("lists %s, want %s", got, want)
	}
}

func TestMove_BlockMoveTimesOut(t *testing.T) {
	e := newTestEngine(t, nil, 0)
	start := time.Now()
	v, err := e.BlockMove("empty", "d", true, true, 100*time.Millisecond, &chanParker{})
	if err != nil || v != nil {
		t.Fatalf("BlockMove = %v, %v; want nil", v, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("returned after %v, before the timeout", d)
	}
}

// TestMove_BlockMoveForGoneClientLeavesItemInDestination: a move taken for a client that left at that
// instant stays in the destination (the hand-off itself); nothing is given back, nothing is lost.
func TestMove_BlockMoveForGoneClientLeavesItemInDestination(t *testing.T) {
	for _, afterServed := range []bool{false, true} {
		e := newTestEngine(t, rawAndLeased, 0)
		go func() { // no t.Fatal off the test goroutine: the wait below fails if this never pushes
			for deadline := time.Now().Add(5 * time.Second); e.Stats().Blocked != 1 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			e.client.RPush(context.Background(), "gsrc", "a")
		}()
		v, err := e.BlockMove("gsrc", "gdst", true, true, 5*time.Second, &goneParker{afterServed: afterServed})
		if err != nil {
			t.Fatalf("afterServed=%v: %v", afterServed, err)
		}
		// The goneParker returns once the wait was served: the take ran, the item is in gdst.
		waitFor(t, "the item in the destination", func() bool { return e.lrange(t, "gdst") == "a" })
		if got := e.lrange(t, "gsrc"); got != "" {
			t.Fatalf("afterServed=%v: source %q, want empty (v=%v)", afterServed, got, v)
		}
		if st := e.Stats(); st.Returned != 0 || st.Lost != 0 {
			t.Fatalf("afterServed=%v: returned %d lost %d; want 0 0", afterServed, st.Returned, st.Lost)
		}
	}
}

func TestMove_BlockMPopCountThroughTransit(t *testing.T) {
	e := newTestEngine(t, rawAndLeased, 0)
	type res struct {
		p   *Pop
		err error
	}
	done := make(chan res, 1)
	go func() {
		p, err := e.BlockMPop([]string{"m1", "m2"}, true, 3, 5*time.Second, &chanParker{})
		done <- res{p, err}
	}()
	e.blocked(t, 1)
	e.client.RPush(context.Background(), "m2", "1", "2", "3", "4", "5")
	r := <-done
	if r.err != nil || r.p == nil {
		t.Fatalf("BlockMPop = %v, %v", r.p, r.err)
	}
	if got, want := r.p.Key+"="+strings.Join(r.p.Items, ","), "m2=1,2,3"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if n := e.transitFields("m2"); n != 3 {
		t.Fatalf("%d transit fields before the reply, want 3", n)
	}
	e.Settle([]*Pop{r.p}, false) // the reply could not be written: back at the head, in order
	if got, want := e.lrange(t, "m2"), "1,2,3,4,5"; got != want {
		t.Fatalf("m2 = %s, want %s", got, want)
	}
}

func TestMove_MPopFirstKeyWithItemsEachInItsMode(t *testing.T) {
	e := newTestEngine(t, rawAndLeased, 0)
	e.push(t, "aloq", "a", "b", "c")
	c := &Consumer{LeaseOwner: "test:1"}
	op := e.MPop(c, []string{"rawnone", "aloq", "rawq"}, false, 2)
	if !op.Sync() {
		t.Fatal("a multi-key MPop is not a Sync operation")
	}
	p, err := run(e, op)
	if err != nil || p == nil || p.Key != "aloq" || len(p.Items) != 2 || len(p.Receipts) != 2 {
		t.Fatalf("MPop = %+v, %v; want 2 leased items of aloq", p, err)
	}
	if got, want := len(c.Held["aloq"]), 2; got != want {
		t.Fatalf("held %d, want %d", got, want)
	}
	e.client.RPush(context.Background(), "rawq", "x")
	p, err = run(e, e.MPop(c, []string{"rawq"}, true, 5))
	if err != nil || p == nil || strings.Join(p.Items, ",") != "x" || p.Receipts != nil {
		t.Fatalf("MPop rawq = %+v, %v; want x through the transit record", p, err)
	}
	e.Settle([]*Pop{p}, true)
	if p, err := run(e, e.MPop(c, []string{"rawnone", "rawq"}, true, 1)); err != nil || p != nil {
		t.Fatalf("MPop of empty keys = %+v, %v; want nil", p, err)
	}
}
