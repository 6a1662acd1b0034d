package queue

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/qgate/qgate/proxy/rdb"
)

// Batched takes of blocked lease pops (leaseTake): one waiter's take leases for the waiters behind it.

// leaseWaiters registers n single-key waits on key, owners o1..on, in that order.
func leaseWaiters(e *testEngine, key string, n int) []*leaseWait {
	ws := make([]*leaseWait, n)
	for i := range ws {
		ws[i] = &leaseWait{owner: "o" + string(rune('1'+i)), key: key, left: true}
		e.leaseWaits.add(ws[i])
	}
	return ws
}

// leaseOwner returns who holds receipt's lease on key ("" when it is not leased).
func leaseOwner(t *testing.T, e *testEngine, key, receipt string) string {
	t.Helper()
	v, _ := e.client.HGet(context.Background(), rdb.LeasesKey(key), receipt).Result()
	owner, _, _ := strings.Cut(v, "\n")
	return owner
}

func TestLeaseTake_LeasesForWaitersBehind(t *testing.T) {
	e := newTestEngine(t, atLeastOnce, 0)
	ctx := context.Background()
	e.client.RPush(ctx, "alo", "a", "b")
	ws := leaseWaiters(e, "alo", 3)
	got, err := e.leaseTake(ws[0], "alo", true, "")
	if err != nil || got == nil {
		t.Fatalf("first take = %v, %v", got, err)
	}
	if got, want := got.Items, []string{"a"}; !slices.Equal(got, want) {
		t.Fatalf("first take's items = %q, want %q", got, want)
	}
	if got, want := leaseOwner(t, e, "alo", got.Receipts[0]), "o1"; got != want {
		t.Fatalf("first lease's owner = %q, want %q", got, want)
	}
	if ws[1].got == nil || ws[2].got != nil {
		t.Fatalf("leased for the waiters behind: %v, %v; want the second only", ws[1].got, ws[2].got)
	}
	if got, want := leaseOwner(t, e, "alo", ws[1].got.Receipts[0]), "o2"; got != want {
		t.Fatalf("second lease's owner = %q, want %q", got, want)
	}
	if ws[1].got.Receipts[0][:26] == got.Receipts[0][:26] {
		t.Fatal("two waiters' receipts share a prefix")
	}
	e.client.RPush(ctx, "alo", "c") // the second waiter's take returns its lease, it does not pop c
	second, err := e.leaseTake(ws[1], "alo", true, "")
	if err != nil || second == nil {
		t.Fatalf("second take = %v, %v", second, err)
	}
	if got, want := second.Items, []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("second take's items = %q, want %q", got, want)
	}
	if got, want := e.client.LRange(ctx, "alo", 0, -1).Val(), []string{"c"}; !slices.Equal(got, want) {
		t.Fatalf("ready list = %q, want %q", got, want)
	}
	if got, want := e.leases.Leased.Load(), int64(2); got != want {
		t.Fatalf("leased counter = %d, want %d", got, want)
	}
}

func TestLeaseTake_EndedWaiterGivesBack(t *testing.T) {
	e := newTestEngine(t, atLeastOnce, 0)
	ctx := context.Background()
	e.client.RPush(ctx, "alo", "a", "b", "c")
	ws := leaseWaiters(e, "alo", 2)
	if _, err := e.leaseTake(ws[0], "alo", true, ""); err != nil {
		t.Fatal(err)
	}
	stray := e.leaseWaits.remove(ws[1])
	if stray == nil {
		t.Fatal("remove returned nothing; want the lease made for the waiter")
	}
	e.returnLeases(ws[1].owner, stray)
	if got, want := e.client.LRange(ctx, "alo", 0, -1).Val(), []string{"b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("ready list = %q, want %q (the lease back at the head)", got, want)
	}
	if got, want := e.client.HLen(ctx, rdb.LeasesKey("alo")).Val(), int64(1); got != want {
		t.Fatalf("%d leases, want %d", got, want)
	}
	if got := len(e.leaseWaits.keys["alo"]); got != 1 {
		t.Fatalf("%d waiters registered, want 1", got)
	}
}

func TestLeaseTake_EmptyTakeGivesBackStranded(t *testing.T) {
	e := newTestEngine(t, atLeastOnce, 0)
	ctx := context.Background()
	e.client.RPush(ctx, "alo", "a", "b")
	ws := leaseWaiters(e, "alo", 2)
	if _, err := e.leaseTake(ws[0], "alo", true, ""); err != nil {
		t.Fatal(err)
	}
	// A waiter the Hub serves before ws[1] (here one that waits on several keys) finds the list
	// empty: the lease made for ws[1] goes back, so the Hub's next take can have it.
	other := &leaseWait{owner: "o9", left: true}
	got, err := e.leaseTake(other, "alo", true, "")
	if err != nil || got != nil {
		t.Fatalf("take on the empty list = %v, %v; want nil", got, err)
	}
	if ws[1].got != nil {
		t.Fatal("the stranded lease is still held for its waiter")
	}
	if got, want := e.client.LRange(ctx, "alo", 0, -1).Val(), []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("ready list = %q, want %q", got, want)
	}
	again, err := e.leaseTake(other, "alo", true, "")
	if err != nil || again == nil || again.Items[0] != "b" {
		t.Fatalf("take after the give-back = %v, %v; want b", again, err)
	}
}
