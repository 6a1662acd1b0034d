package proxy_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// TestCompat_RedisPy and TestCompat_IORedis run unmodified redis-py and ioredis programs (the seed
// article's email worker, pipelines, pub/sub, refused commands) against qgate on a real Redis.
// .ci/run installs python3-redis and the ioredis package; without them these tests fail, not skip.

func TestCompat_RedisPy(t *testing.T) {
	runCompat(t, "/usr/bin/python3", "redispy_compat.py")
}

func TestCompat_IORedis(t *testing.T) {
	if _, err := os.Stat("testdata/compat/node_modules/ioredis"); err != nil {
		t.Fatalf("ioredis is not installed: run npm ci in proxy/testdata/compat (.ci/run does): %v", err)
	}
	runCompat(t, "node", "ioredis_compat.js")
}

func runCompat(t *testing.T, interpreter, script string) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	host, port, _ := net.SplitHostPort(q.Addr)
	cmd := exec.Command(interpreter, script, host, port)
	cmd.Dir = filepath.Join("testdata", "compat")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("%s %s: %v\n%s", interpreter, script, err, out)
	}
}
