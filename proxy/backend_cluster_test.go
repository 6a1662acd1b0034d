package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// clusterErr is a reply error as go-redis returns it (redis.Error).
type clusterErr string

func (e clusterErr) Error() string { return string(e) }
func (clusterErr) RedisError()     {}

// Which errors make the Cluster client reload its slot map (proxy/DESIGN.md "Cluster failover").
func TestClusterStaleMap_ReloadsOnlyOnTopologyErrors(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{clusterErr("ERR wrong number of arguments"), false},
		{clusterErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{clusterErr("MOVED 3999 127.0.0.1:6381"), true},
		{clusterErr("CLUSTERDOWN The cluster is down"), true},
		{dial, true},
		{fmt.Errorf("redis: connection pool: %w", dial), true},
		{io.EOF, true},
		{io.ErrUnexpectedEOF, true},
		{syscall.ECONNRESET, true},
		{errors.New("something else"), false},
	} {
		if got, want := staleClusterMap(tc.err), tc.want; got != want {
			t.Errorf("staleClusterMap(%v) = %v, want %v", tc.err, got, want)
		}
	}
}
