package proxy_test

import (
	"context"
	"testing"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// TestOpenBackend_ScriptFlags: a backend that understands Redis 7 script flags runs the flagged
// scripts on every client; the embedded one (miniredis does not) runs the plain variants on every
// client, its multiplexer and NewClient's included.
func TestOpenBackend_ScriptFlags(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		url   string
		flags bool
	}{
		{"embedded", "", false},
		{"redis-server 7", proxytest.StartRedis(t).URL(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openBackend(t, tc.url)
			if got, want := b.ScriptFlags, tc.flags; got != want {
				t.Fatalf("ScriptFlags = %v, want %v", got, want)
			}
			m := b.Mux(2)
			keys := []string{rdb.LeasedQueuesKey}
			if err := rdb.RegisterQueue.Run(ctx, b.Client, keys, 1, "a").Err(); err != nil {
				t.Fatalf("Run on Client: %v", err)
			}
			cmd := rdb.RegisterQueue.Cmd(ctx, m, keys, 1, "b")
			if err := m.Process(ctx, cmd); err != nil && !rdb.IsNoScript(err) {
				t.Fatalf("Cmd on the multiplexer: %v", err)
			}
			if rdb.IsNoScript(cmd.Err()) {
				t.Fatal("the multiplexer ran another variant than Client (NOSCRIPT after Client loaded it)")
			}
			if n, err := b.Client.ZCard(ctx, rdb.LeasedQueuesKey).Result(); err != nil || n != 2 {
				t.Fatalf("ZCARD = %d, %v; want 2", n, err)
			}
		})
	}
}
