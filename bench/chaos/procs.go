package main

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
	"syscall"
	"time"
)

// proc is one run of a subprocess the driver starts and may kill -9.
type proc struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has exited
}

// spawn starts bin with args, output appended to logPath (the same file across restarts, with a
// header line per start). Pdeathsig: the kernel kills the child if the driver dies.
func spawn(bin string, args []string, dir, logPath, header string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close() // the child has its own copy of the descriptor
	fmt.Fprintf(lf, "==== %s %s\n", time.Now().Format("15:04:05.000"), header)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// kill9 sends SIGKILL and waits until the process is gone.
func (p *proc) kill9() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill9()
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitPing polls addr until PING answers PONG (a loading Redis answers -LOADING), the process
// exits, or timeout passes.
func waitPing(p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("process %d exited before %s answered PING (last: %v)", p.pid, addr, last)
		}
		if c, err := dial(addr, time.Second); err == nil {
			v, err := c.do(2*time.Second, "PING")
			_ = c.Close()
			if err == nil && v == "PONG" {
				return nil
			}
			last = err
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer PING within %s (last: %v)", addr, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// findBinary looks in PATH and the usual install directories.
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
	return "", fmt.Errorf("%s not found in PATH, /usr/bin or /usr/local/bin (apt-get install redis-server)", name)
}

// repoRoot is the qgate repository (the module root above bench/).
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

// buildQgate builds the qgate binary from the repository into dir.
func buildQgate(ctx context.Context, dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "qgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build qgate in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// redisServer is a redis-server with AOF (appendfsync always) that can be killed and started
// again on the same port and directory.
type redisServer struct {
	bin, dir, addr, log string
	args                []string
	p                   *proc
}

func newRedis(dir string) (*redisServer, error) {
	bin, err := findBinary("redis-server")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	r := &redisServer{bin: bin, dir: dir, addr: addr, log: filepath.Join(dir, "redis.log")}
	r.args = []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--logfile", "", "--protected-mode", "no",
	}
	return r, nil
}

func (r *redisServer) start() error {
	p, err := spawn(r.bin, r.args, r.dir, r.log, "redis-server "+strings.Join(r.args, " "))
	if err != nil {
		return err
	}
	if err := waitPing(p, r.addr, 60*time.Second); err != nil {
		p.kill9()
		return fmt.Errorf("redis-server: %w (log %s)", err, r.log)
	}
	r.p = p
	return nil
}

// qgateServer is the qgate binary run as a subprocess on a fixed address and config.
type qgateServer struct {
	bin, addr, log string
	args           []string
	p              *proc
	starts         int
}

func newQgate(bin, dir, backendAddr string, visibility time.Duration, maxAttempts int) (*qgateServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "qgate.yaml")
	if err := os.WriteFile(conf, []byte(qgateConfig(visibility, maxAttempts)), 0o644); err != nil {
		return nil, err
	}
	return &qgateServer{
		bin: bin, addr: addr, log: filepath.Join(dir, "qgate.log"),
		args: []string{"--config", conf, "--listen", addr, "--backend", "redis://" + backendAddr},
	}, nil
}

func (q *qgateServer) start() error {
	var last error
	for range 5 { // the port of a killed qgate is normally free at once; retry if not
		q.starts++
		p, err := spawn(q.bin, q.args, filepath.Dir(q.log), q.log, "qgate start #"+strconv.Itoa(q.starts))
		if err != nil {
			return err
		}
		if last = waitPing(p, q.addr, 20*time.Second); last == nil {
			q.p = p
			return nil
		}
		p.kill9()
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("qgate: %w (log %s)", last, q.log)
}

// consumerProc is one consumer slot: a re-exec of this binary in consumer mode, restarted in the
// same slot (same queue, same log file) after each kill.
type consumerProc struct {
	slot  int
	queue string
	ack   string
	log   string
	p     *proc
	pids  []int
	kills int
}

func (c *consumerProc) start(self, qgateAddr string, visibility, work time.Duration, dir string) error {
	args := []string{"-consumer", "-addr", qgateAddr, "-queue", c.queue, "-ack", c.ack,
		"-log", c.log, "-visibility", visibility.String(), "-work", work.String()}
	p, err := spawn(self, args, dir, filepath.Join(dir, fmt.Sprintf("consumer-%d.stderr", c.slot)),
		fmt.Sprintf("consumer %d", c.slot))
	if err != nil {
		return err
	}
	c.p = p
	c.pids = append(c.pids, p.pid)
	return nil
}
