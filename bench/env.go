package main

import (
	"bufio"
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
	"time"

	"github.com/qgate/qgate/proxy/proxytest"
)

// proc is a server process started by the bench (qgate or twemproxy).
type proc struct {
	Name string
	Addr string
	PID  int
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{}
	// startLen is how much the process had logged when it answered PING: later lines are runtime.
	startLen int
}

// tailBuffer keeps everything a subprocess wrote (bounded) for the report.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.buf.Len() < 4<<20 {
		t.buf.Write(p)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// startProc runs bin with args and waits until addr answers PING.
func startProc(name, bin, addr string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	p := &proc{Name: name, Addr: addr, cmd: cmd, log: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.PID = cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("start %s: exited: %s", name, strings.TrimSpace(p.log.String()))
		default:
		}
		if c, err := dial(addr); err == nil {
			_ = c.nc.SetDeadline(time.Now().Add(2 * time.Second))
			v, err := c.do("PING")
			_ = c.Close()
			if err == nil && v == "PONG" {
				p.startLen = len(p.log.String())
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("start %s: %s did not answer PING in 15s: %s", name, addr, strings.TrimSpace(p.log.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and, after 10 s, SIGKILL.
func (p *proc) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has died.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// repoRoot is the qgate repository (the parent of bench/).
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/qgate/qgate\n")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("cannot find the qgate repository (go.mod of github.com/qgate/qgate) above " + wd)
		}
	}
}

// buildQgate builds the qgate binary from the tree into dir.
func buildQgate(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "qgate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/qgate/qgate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build qgate: %w\n%s", err, out)
	}
	return bin, nil
}

// startQgate runs the qgate binary against backendURL on a free port.
func startQgate(bin, backendURL string, extra ...string) (*proc, error) {
	var lastErr error
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args := append([]string{"--backend", backendURL, "--listen", addr, "--log-level", "warn"}, extra...)
		p, err := startProc("qgate", bin, addr, args...)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// twemproxyPath finds nutcracker, or returns "" when it is not installed.
func twemproxyPath() string {
	if p, err := exec.LookPath("nutcracker"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nutcracker", "/usr/bin/nutcracker", "/usr/local/sbin/nutcracker", "/usr/local/bin/nutcracker"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// startTwemproxy writes a one-pool nutcracker config in dir pointing at redisAddr and starts it.
// server_connections is twemproxy's default (1): all clients share one pipelined backend
// connection, which is how it is normally deployed.
func startTwemproxy(bin, dir, redisAddr string) (*proc, error) {
	var lastErr error
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		stats, err := freeAddr()
		if err != nil {
			return nil, err
		}
		_, statsPort, _ := net.SplitHostPort(stats)
		conf := filepath.Join(dir, "nutcracker.yml")
		body := fmt.Sprintf(`bench:
  listen: %s
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  preconnect: true
  timeout: 30000
  server_connections: 1
  servers:
   - %s:1
`, addr, redisAddr)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, err
		}
		p, err := startProc("twemproxy", bin, addr, "-c", conf, "-s", statsPort, "-a", "127.0.0.1",
			"-o", filepath.Join(dir, "nutcracker.log"))
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// twemproxyVersion returns "nutcracker-x.y.z" or "".
func twemproxyVersion(bin string) string {
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "nutcracker-") {
			return f
		}
	}
	return ""
}

// launchRedis starts a redis-server for the bench with room for the connection scenarios.
func launchRedis(dir string) (*proxytest.Redis, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return proxytest.LaunchRedis(dir, "--maxclients", "16000")
}

// redisPID asks a redis-server for its process id.
func redisPID(addr string) (int, error) {
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := infoInt(c, "server", "process_id")
	return int(n), err
}

var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}()

// procCPU is the user+system CPU time the process has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat times")
	}
	return time.Duration((ut + st) / clockTicks * float64(time.Second)), nil
}

// procRSS is the resident set size (VmRSS) of the process in bytes.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fs := strings.Fields(line[len("VmRSS:"):])
			if len(fs) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// cpuModel reads the CPU model name from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// memTotal returns MemTotal from /proc/meminfo, or "".
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			fs := strings.Fields(line)
			if len(fs) >= 2 {
				kb, _ := strconv.ParseInt(fs[1], 10, 64)
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return ""
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// gitDescribe returns the tree's commit and whether it has uncommitted changes.
func gitDescribe() string {
	root, err := repoRoot()
	if err != nil {
		return "unknown"
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += " + uncommitted changes"
	}
	return rev
}

func redisVersion(addr string) string {
	c, err := dial(addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	v, err := c.do("INFO", "server")
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	ver, _ := infoField(s, "redis_version")
	return ver
}
