package proxy_test

import (
	"context"
	"testing"

	"github.com/qgate/qgate/proxy/rdb"
)

// TestOOM_DeliveredFieldsDeletedByNextPop: with Redis out of memory (noeviction), pops go on and
// the next pop's script deletes the delivered pops' fields (DESIGN.md "The transit record"): every
// item is delivered once, nothing is given back or lost, and the transit record ends empty.
func TestOOM_DeliveredFieldsDeletedByNextPop(t *testing.T) {
	e := e2eStart(t)
	ctx := context.Background()
	items := faultItems("job", 20)
	faultPush(t, e.Direct, "jobs", items)
	faultFill(t, e.Direct)
	c := faultConsumerClient(t, e.Qgate)
	for i, want := range items {
		got, err := c.LPop(ctx, "jobs").Result()
		if err != nil || got != want {
			t.Fatalf("LPOP %d under OOM = %q, %v; want %q", i+1, got, err, want)
		}
	}
	rec := rdb.TransitKey("jobs", e.Qgate.Server.Stats().Instance)
	e2eEventually(t, "the transit record empty", func() bool { return e.Direct.HLen(ctx, rec).Val() == 0 })
	st := e.Qgate.Server.Stats()
	if st.LostItems != 0 || st.ReturnedItems != 0 || st.RedeliveryRisk != 0 {
		t.Fatalf("lost %d, returned %d, redelivery risk %d; want 0, 0, 0", st.LostItems, st.ReturnedItems, st.RedeliveryRisk)
	}
}
