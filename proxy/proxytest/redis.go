// Package proxytest holds helpers shared by qgate's tests and benchmarks: real redis-server
// processes (standalone, Sentinel, Cluster) on free ports, and a qgate under test.
package proxytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
)

const (
	// ReadyTimeout bounds how long a redis-server may take to accept connections.
	ReadyTimeout = 10 * time.Second
	// StopTimeout bounds how long Stop waits after SIGTERM before it sends SIGKILL.
	StopTimeout = 10 * time.Second
	// ClusterTimeout bounds cluster creation and convergence.
	ClusterTimeout = 60 * time.Second
	// SentinelMaster is the master name StartSentinel monitors.
	SentinelMaster = "mymaster"

	readyRedis    = "Ready to accept connections"
	readySentinel = "+monitor master"
	portAttempts  = 5
	logTailLines  = 200
)

// Redis is one redis-server (or sentinel) process started by this package.
type Redis struct {
	Addr string // 127.0.0.1:port
	Dir  string // working directory (RDB, AOF, cluster config)
	Port int

	bin   string
	args  []string // full argument list, port included, so Restart reuses it
	ready string   // log line that marks readiness

	mu   sync.Mutex
	proc *process
}

// process is one run of a redis-server binary.
type process struct {
	cmd  *exec.Cmd
	log  *logWriter
	done chan struct{} // closed once the process has exited
	err  error         // result of Wait, valid after done
}

// RedisServerPath finds redis-server in PATH or the usual install directories.
func RedisServerPath() (string, error) { return findBinary("redis-server") }

// RedisCLIPath finds redis-cli in PATH or the usual install directories.
func RedisCLIPath() (string, error) { return findBinary("redis-cli") }

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/bin", "/usr/local/bin", "/usr/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s: not in PATH, /usr/bin or /usr/local/bin (install it: apt-get install redis-server redis-tools)", name)
}

// StartRedis starts a redis-server on a free 127.0.0.1 port in a fresh temporary directory and
// stops it when the test ends. Persistence is off (--save "" --appendonly no) unless extraArgs
// set --save or --appendonly.
func StartRedis(tb testing.TB, extraArgs ...string) *Redis {
	tb.Helper()
	r, err := LaunchRedis(tb.TempDir(), extraArgs...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// LaunchRedis starts a redis-server in dir on a free 127.0.0.1 port; the caller must Close it.
// It is StartRedis for programs without a testing.TB (bench/).
func LaunchRedis(dir string, extraArgs ...string) (*Redis, error) {
	return launch(dir, "", readyRedis, false, extraArgs)
}

// launch starts redis-server with the default arguments, conf (a config file, optional) and
// extraArgs, retrying on a new port when the chosen one turns out to be taken.
func launch(dir, conf, ready string, clusterBus bool, extraArgs []string) (*Redis, error) {
	bin, err := RedisServerPath()
	if err != nil {
		return nil, fmt.Errorf("launch redis: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("launch redis: %w", err)
	}
	fixedPort := hasArg(extraArgs, "port")
	var lastErr error
	for range portAttempts {
		var args []string
		if conf != "" {
			args = append(args, conf)
		}
		port := 0
		if !fixedPort {
			if port, err = freePort(); err != nil {
				return nil, fmt.Errorf("launch redis: %w", err)
			}
			args = append(args, "--port", strconv.Itoa(port))
		}
		if clusterBus && !hasArg(extraArgs, "cluster-port") {
			bus, err := freePort()
			if err != nil {
				return nil, fmt.Errorf("launch redis: %w", err)
			}
			args = append(args, "--cluster-port", strconv.Itoa(bus))
		}
		args = append(args, defaultArgs(dir, extraArgs)...)
		args = append(args, extraArgs...)
		if fixedPort {
			port, err = strconv.Atoi(argValue(args, "port"))
			if err != nil {
				return nil, fmt.Errorf("launch redis: bad --port: %w", err)
			}
		}
		r := &Redis{
			Addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Dir:   dir,
			Port:  port,
			bin:   bin,
			args:  args,
			ready: ready,
		}
		err := r.start()
		if err == nil {
			return r, nil
		}
		lastErr = err
		if fixedPort || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("launch redis: %w", lastErr)
}

// defaultArgs are the arguments every test server gets unless extraArgs set them.
func defaultArgs(dir string, extraArgs []string) []string {
	defaults := [][]string{
		{"--bind", "127.0.0.1"},
		{"--dir", dir},
		{"--save", ""},
		{"--appendonly", "no"},
		{"--daemonize", "no"},
		{"--logfile", ""},
		{"--protected-mode", "no"},
	}
	var out []string
	for _, d := range defaults {
		if !hasArg(extraArgs, strings.TrimPrefix(d[0], "--")) {
			out = append(out, d...)
		}
	}
	return out
}

func hasArg(args []string, name string) bool {
	for _, a := range args {
		if strings.EqualFold(a, "--"+name) {
			return true
		}
	}
	return false
}

// argValue returns the value following the last --name in args.
func argValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		if strings.EqualFold(a, "--"+name) && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var errAddrInUse = errors.New("address already in use")

// start runs the binary with r.args and waits until its log shows r.ready.
func (r *Redis) start() error {
	lw := newLogWriter(r.ready)
	cmd := exec.Command(r.bin, r.args...)
	cmd.Dir = r.Dir
	cmd.Stdout = lw
	cmd.Stderr = lw
	cmd.SysProcAttr = sysProcAttr() // no orphans if the test binary dies (Linux)
	cmd.WaitDelay = time.Second     // a forked bgsave child may hold stdout open
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.bin, err)
	}
	p := &process{cmd: cmd, log: lw, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case <-lw.readyCh:
		r.mu.Lock()
		r.proc = p
		r.mu.Unlock()
		return nil
	case <-p.done:
		tail := lw.tail()
		if strings.Contains(tail, "Address already in use") {
			return fmt.Errorf("redis-server on %s: %w", r.Addr, errAddrInUse)
		}
		return fmt.Errorf("redis-server on %s exited before it was ready (%v); log:\n%s", r.Addr, p.err, tail)
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redis-server on %s not ready after %s; log:\n%s", r.Addr, ReadyTimeout, lw.tail())
	}
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr }

// Client returns a go-redis client for the server, closed when the test ends.
func (r *Redis) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Log returns the last lines the server logged.
func (r *Redis) Log() string {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return ""
	}
	return p.log.tail()
}

// Stop sends SIGTERM and waits for the server to exit, escalating to SIGKILL after StopTimeout.
// It is safe to call more than once.
func (r *Redis) Stop() { _ = r.Close() }

// Close is Stop that reports an exit other than a clean one (for programs without a testing.TB).
func (r *Redis) Close() error {
	p := r.take()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a frozen server cannot handle SIGTERM
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("stop redis-server %s: %w", r.Addr, p.err)
		}
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop redis-server %s: killed after %s without exiting on SIGTERM", r.Addr, StopTimeout)
	}
}

// Freeze stops the server with SIGSTOP: it keeps its connections but answers nothing until Thaw (a
// stalled backend). Stop and Kill thaw it first.
func (r *Redis) Freeze() { r.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server with SIGCONT.
func (r *Redis) Thaw() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		_ = r.proc.cmd.Process.Signal(sig)
	}
}

// Kill ends the server with SIGKILL (a crash: no shutdown save, no AOF fsync beyond policy).
func (r *Redis) Kill() {
	p := r.take()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart starts the server again on the same port and directory with the same arguments,
// stopping it first if it is still running.
func (r *Redis) Restart(tb testing.TB) {
	tb.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		tb.Fatalf("restart redis: %v", err)
	}
}

// take detaches the running process, if any, so only one caller stops it.
func (r *Redis) take() *process {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proc
	r.proc = nil
	return p
}

// StartSentinel starts a Sentinel monitoring master as SentinelMaster with quorum 1 and
// returns its address once it reports the master; it is stopped when the test ends.
func StartSentinel(tb testing.TB, master *Redis) (sentinelAddr string) {
	tb.Helper()
	s, err := LaunchSentinel(tb.TempDir(), master)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s.Addr
}

// LaunchSentinel is StartSentinel without a testing.TB; the caller must Close the result.
func LaunchSentinel(dir string, master *Redis) (*Redis, error) {
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
		SentinelMaster, master.Port, SentinelMaster)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("launch sentinel: %w", err)
	}
	s, err := launch(dir, conf, readySentinel, false, []string{"--sentinel"})
	if err != nil {
		return nil, fmt.Errorf("launch sentinel: %w", err)
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	err = waitFor(ReadyTimeout, func(ctx context.Context) error {
		got, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil {
			return err
		}
		if addr := net.JoinHostPort(got[0], got[1]); addr != master.Addr {
			return fmt.Errorf("sentinel reports master %s, want %s", addr, master.Addr)
		}
		return nil
	})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("launch sentinel: wait for master: %w", err)
	}
	return s, nil
}

// StartCluster starts a Redis Cluster of masters (at least 3) masters without replicas and
// returns their addresses once every node reports cluster_state:ok; the nodes are stopped
// when the test ends.
func StartCluster(tb testing.TB, masters int) (addrs []string) {
	tb.Helper()
	nodes, err := LaunchCluster(tb.TempDir(), masters)
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range nodes {
		tb.Cleanup(n.Stop)
		addrs = append(addrs, n.Addr)
	}
	return addrs
}

// LaunchCluster is StartCluster without a testing.TB: node i lives in dir/node<i>; the caller
// must Close every node.
func LaunchCluster(dir string, masters int) (nodes []*Redis, err error) {
	return LaunchClusterReplicas(dir, masters, 0, 5*time.Second)
}

// StartClusterReplicas starts a Redis Cluster of masters masters (at least 3), each with replicas
// replicas, and cluster-node-timeout nodeTimeout (small values make failovers fast). It returns every
// node once all report cluster_state:ok and every replica's link to its master is up; they are
// stopped when the test ends. Which node is a master is known only from the nodes themselves (ROLE).
func StartClusterReplicas(tb testing.TB, masters, replicas int, nodeTimeout time.Duration) []*Redis {
	tb.Helper()
	nodes, err := LaunchClusterReplicas(tb.TempDir(), masters, replicas, nodeTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range nodes {
		tb.Cleanup(n.Stop)
	}
	return nodes
}

// Addrs returns the nodes' addresses, in order.
func Addrs(nodes []*Redis) []string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// ClusterURL is the redis+cluster:// backend URL of a Cluster's nodes.
func ClusterURL(addrs []string) string { return "redis+cluster://" + strings.Join(addrs, ",") }

// ClusterConfig is qgate's default configuration with the Cluster of addrs as its backend.
func ClusterConfig(addrs []string) proxy.Config {
	cfg := proxy.DefaultConfig()
	cfg.Backend = ClusterURL(addrs)
	return cfg
}

// LaunchClusterReplicas is StartClusterReplicas without a testing.TB; the caller must Close every node.
func LaunchClusterReplicas(dir string, masters, replicas int, nodeTimeout time.Duration) (nodes []*Redis, err error) {
	if masters < 3 {
		return nil, fmt.Errorf("launch cluster: need at least 3 masters, got %d", masters)
	}
	cli, err := RedisCLIPath()
	if err != nil {
		return nil, fmt.Errorf("launch cluster: %w", err)
	}
	defer func() {
		if err != nil {
			for _, n := range nodes {
				_ = n.Close()
			}
			nodes = nil
		}
	}()
	total := masters * (1 + replicas)
	var addrs []string
	for i := range total {
		nodeDir := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			return nodes, fmt.Errorf("launch cluster: %w", err)
		}
		n, err := launch(nodeDir, "", readyRedis, true, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
		})
		if err != nil {
			return nodes, fmt.Errorf("launch cluster: %w", err)
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), ClusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return nodes, fmt.Errorf("launch cluster: redis-cli --cluster create: %w\n%s", err, out)
	}

	want := []string{"cluster_state:ok", "cluster_slots_ok:16384", fmt.Sprintf("cluster_known_nodes:%d", total)}
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		err := waitFor(ClusterTimeout, func(ctx context.Context) error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for _, w := range want {
				if !strings.Contains(info, w+"\r\n") {
					return fmt.Errorf("node %s: no %q in CLUSTER INFO", n.Addr, w)
				}
			}
			if repl, err := c.Info(ctx, "replication").Result(); err != nil {
				return err
			} else if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("replica %s: link to its master not up yet", n.Addr)
			}
			return nil
		})
		_ = c.Close()
		if err != nil {
			return nodes, fmt.Errorf("launch cluster: wait for cluster_state:ok: %w", err)
		}
	}
	return nodes, nil
}

// waitFor polls cond until it returns nil or timeout passes, returning cond's last error.
func waitFor(timeout time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// logWriter keeps the tail of a server's output and signals when a line contains marker.
type logWriter struct {
	marker  string
	readyCh chan struct{}

	mu      sync.Mutex
	partial []byte
	lines   []string
	ready   bool
}

func newLogWriter(marker string) *logWriter {
	return &logWriter{marker: marker, readyCh: make(chan struct{})}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		if len(w.lines) == logTailLines {
			w.lines = w.lines[1:]
		}
		w.lines = append(w.lines, line)
		if !w.ready && strings.Contains(line, w.marker) {
			w.ready = true
			close(w.readyCh)
		}
	}
	return len(p), nil
}

func (w *logWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n") + string(w.partial)
}
