// Command mem measures how much memory qgate needs for large values and large queued output, next
// to redis-server given the same load directly. Each load runs on a fresh redis-server (and, for
// qgate, a fresh qgate process built from this tree in front of it); the figure is the measured
// process's peak RSS (VmHWM) less its RSS before the load.
//
//	cd bench && go run ./mem                          # all loads, both targets
//	cd bench && go run ./mem -loads value -value-mb 100
//
// Loads:
//
//	value   one RPUSH of a -value-mb value, then LPOP of it (read at once)
//	lrange  -lranges pipelined LRANGE of a list of 1,000 items of 1 KiB (each reply ~1 MiB), sent in
//	        one write; the client reads nothing until the server's RSS has stopped growing, then reads all
//	pubsub  -subscribers subscribers that read nothing while -pubsub-mb MiB of -msg-bytes messages is
//	        published to their channel, then read all (the pub/sub output limits are lifted on both
//	        targets so that nobody is disconnected)
//	header  6 rounds of 4 new connections that each announce a 500 MB argument and send 1 KiB of it;
//	        with -auth, qgate has a user and Redis a requirepass, and nobody logs in
//
// qgate runs with its defaults (envelope on) unless -qgate-args says otherwise.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/proxy/proxytest"
)

type config struct {
	loads       []string
	valueMB     int
	lranges     int
	subscribers int
	pubsubMB    int
	msgBytes    int
	qgateArgs   []string
	targets     []string
	auth        bool
}

func main() {
	var cfg config
	loads := flag.String("loads", "value,lrange,pubsub,header", "loads to run, comma-separated: value, lrange, pubsub, header")
	targets := flag.String("targets", "direct,qgate", "targets, comma-separated: direct, qgate")
	flag.IntVar(&cfg.valueMB, "value-mb", 100, "value size of the value load, MiB")
	flag.IntVar(&cfg.lranges, "lranges", 1000, "pipelined LRANGE commands of the lrange load")
	flag.IntVar(&cfg.subscribers, "subscribers", 10, "subscribers of the pubsub load")
	flag.IntVar(&cfg.pubsubMB, "pubsub-mb", 40, "MiB published to each subscriber in the pubsub load")
	flag.IntVar(&cfg.msgBytes, "msg-bytes", 4096, "message size of the pubsub load")
	qargs := flag.String("qgate-args", "", "extra flags for qgate, space separated")
	flag.BoolVar(&cfg.auth, "auth", false, "header load: require a login on both targets")
	flag.Parse()
	cfg.loads = strings.Split(*loads, ",")
	cfg.targets = strings.Split(*targets, ",")
	cfg.qgateArgs = strings.Fields(*qargs)
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mem:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	dir, err := os.MkdirTemp("", "qgate-mem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := buildQgate(dir)
	if err != nil {
		return err
	}
	fmt.Printf("%-8s %-7s %12s %12s %12s  %s\n", "load", "target", "RSS before", "peak RSS", "growth", "notes")
	failed := false
	for _, load := range cfg.loads {
		growth := map[string]int64{}
		for _, tg := range cfg.targets {
			res, err := measure(cfg, bin, filepath.Join(dir, load+"-"+tg), load, tg)
			if err != nil {
				fmt.Printf("%-8s %-7s FAILED: %v\n", load, tg, err)
				failed = true
				continue
			}
			growth[tg] = res.peak - res.before
			if load == "value" {
				res.note += fmt.Sprintf(", growth %.2f× the value", float64(res.peak-res.before)/float64(cfg.valueMB<<20))
			}
			fmt.Printf("%-8s %-7s %9.1f MiB %9.1f MiB %9.1f MiB  %s\n", load, tg, mib(res.before), mib(res.peak), mib(res.peak-res.before), res.note)
		}
		if d, q := growth["direct"], growth["qgate"]; d > 0 && q > 0 {
			fmt.Printf("%-8s qgate/direct = %.2f×\n", load, float64(q)/float64(d))
		}
	}
	if failed {
		return errors.New("some loads failed")
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

type result struct {
	before, peak int64
	note         string
}

// measure runs one load against one target on fresh processes.
func measure(cfg config, bin, dir, load, tg string) (res result, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, err
	}
	r, err := proxytest.LaunchRedis(dir)
	if err != nil {
		return res, err
	}
	defer r.Close()
	adm, err := dial(r.Addr)
	if err != nil {
		return res, err
	}
	defer adm.Close()
	info, err := adm.do("INFO", "server")
	if err != nil {
		return res, err
	}
	pid, err := strconv.Atoi(infoField(info.(string), "process_id"))
	if err != nil {
		return res, fmt.Errorf("redis process_id: %v", err)
	}
	addr := r.Addr
	extra := append([]string{"--pubsub-output-limit", strconv.Itoa(1 << 40)}, cfg.qgateArgs...)
	if cfg.auth && tg == "qgate" {
		hash, err := bcrypt.GenerateFromPassword([]byte(strconv.FormatInt(time.Now().UnixNano(), 36)), bcrypt.MinCost)
		if err != nil {
			return res, err
		}
		conf := filepath.Join(dir, "qgate.yaml")
		if err := os.WriteFile(conf, []byte("users:\n  - name: default\n    password_hash: \""+string(hash)+"\"\n"), 0o600); err != nil {
			return res, err
		}
		extra = append(extra, "--config", conf)
	}
	if cfg.auth && tg == "direct" {
		if _, err := adm.do("CONFIG", "SET", "requirepass", strconv.FormatInt(time.Now().UnixNano(), 36)); err != nil {
			return res, err
		}
	}
	if tg == "qgate" {
		q, err := startQgate(bin, r.URL(), extra...)
		if err != nil {
			return res, err
		}
		defer q.stop()
		addr, pid = q.addr, q.cmd.Process.Pid
	} else if _, err := adm.do("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0"); err != nil {
		return res, err
	}
	time.Sleep(300 * time.Millisecond)
	if res.before, err = procStatus(pid, "VmRSS"); err != nil {
		return res, err
	}
	switch load {
	case "value":
		res.note, err = loadValue(addr, cfg.valueMB<<20)
	case "lrange":
		res.note, err = loadLrange(addr, adm, pid, cfg.lranges)
	case "pubsub":
		res.note, err = loadPubSub(addr, pid, cfg.subscribers, cfg.pubsubMB<<20, cfg.msgBytes)
	case "header":
		res.note, err = loadHeader(addr, pid, 6, 4)
	default:
		err = fmt.Errorf("unknown load %q", load)
	}
	if err != nil {
		return res, err
	}
	res.peak, err = procStatus(pid, "VmHWM")
	return res, err
}

// loadValue pushes one value of size bytes and pops it.
func loadValue(addr string, size int) (string, error) {
	c, err := dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	val := bytes.Repeat([]byte("x"), size)
	cmd := "*3\r\n$5\r\nRPUSH\r\n$9\r\nmem:value\r\n$" + strconv.Itoa(size) + "\r\n"
	if _, err := c.w.WriteString(cmd); err != nil {
		return "", err
	}
	if _, err := c.w.Write(val); err != nil {
		return "", err
	}
	if _, err := c.w.WriteString("\r\n"); err != nil {
		return "", err
	}
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	if v, err := c.read(); err != nil || v != int64(1) {
		return "", fmt.Errorf("RPUSH reply %v, %v", v, err)
	}
	v, err := c.do("LPOP", "mem:value")
	if err != nil {
		return "", err
	}
	if s, _ := v.(string); len(s) != size {
		return "", fmt.Errorf("LPOP returned %d bytes, want %d", len(s), size)
	}
	return fmt.Sprintf("one %d MiB value", size>>20), nil
}

// loadLrange sends n LRANGE of a ~1 MiB list in one write and reads the replies only once the
// server's RSS has stopped growing.
func loadLrange(addr string, adm *rconn, pid, n int) (string, error) {
	const items, itemSize = 1000, 1024
	item := strings.Repeat("i", itemSize)
	var fill []byte
	for range items {
		fill = appendCmd(fill, "RPUSH", "mem:list", item)
	}
	if err := adm.send(fill); err != nil {
		return "", err
	}
	for range items {
		if _, err := adm.read(); err != nil {
			return "", err
		}
	}
	c, err := dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var cmds []byte
	for range n {
		cmds = appendCmd(cmds, "LRANGE", "mem:list", "0", "-1")
	}
	if err := c.send(cmds); err != nil {
		return "", err
	}
	settle(pid)
	var total int64
	for i := range n {
		m, err := c.skipCount()
		if err != nil {
			return "", fmt.Errorf("reply %d: %v", i, err)
		}
		total += m
	}
	return fmt.Sprintf("%d replies, %.0f MiB in all", n, mib(total)), nil
}

// loadPubSub subscribes subs clients, publishes size bytes to each while they read nothing, waits
// for the server's RSS to stop growing, then reads everything.
func loadPubSub(addr string, pid, subs, size, msgSize int) (string, error) {
	msgs := size / msgSize
	var conns []*rconn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range subs {
		c, err := dialSize(addr, 64<<10)
		if err != nil {
			return "", err
		}
		conns = append(conns, c)
		if v, err := c.do("SUBSCRIBE", "mem:chan"); err != nil {
			return "", fmt.Errorf("SUBSCRIBE: %v %v", v, err)
		}
	}
	pub, err := dial(addr)
	if err != nil {
		return "", err
	}
	defer pub.Close()
	msg := strings.Repeat("m", msgSize)
	batch := max(1, (1<<20)/msgSize)
	for sent := 0; sent < msgs; sent += batch {
		var b []byte
		k := min(batch, msgs-sent)
		for range k {
			b = appendCmd(b, "PUBLISH", "mem:chan", msg)
		}
		if err := pub.send(b); err != nil {
			return "", err
		}
		for range k {
			v, err := pub.read()
			if err != nil || v != int64(subs) {
				return "", fmt.Errorf("PUBLISH reply %v, %v", v, err)
			}
		}
	}
	settle(pid)
	for i, c := range conns {
		for j := range msgs {
			v, err := c.read()
			if err != nil {
				return "", fmt.Errorf("subscriber %d message %d: %v", i, j, err)
			}
			if a, ok := v.([]any); !ok || len(a) != 3 || a[2] != msg {
				return "", fmt.Errorf("subscriber %d message %d: unexpected %.100v", i, j, v)
			}
		}
	}
	return fmt.Sprintf("%d subscribers × %d messages of %d B", subs, msgs, msgSize), nil
}

// loadHeader runs rounds of conns new connections that each announce a 500 MB argument and send
// 1 KiB of it, then close once the server's RSS has settled.
func loadHeader(addr string, pid, rounds, conns int) (string, error) {
	msg := []byte("*1\r\n$500000000\r\n" + strings.Repeat("x", 1024))
	refused := 0
	for range rounds {
		var cs []net.Conn
		for range conns {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				return "", err
			}
			cs = append(cs, c)
			if _, err := c.Write(msg); err != nil {
				return "", err
			}
		}
		settle(pid)
		for _, c := range cs {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			b := make([]byte, 128)
			if n, _ := c.Read(b); strings.Contains(string(b[:n]), "unauthenticated bulk length") {
				refused++
			}
			c.Close()
		}
	}
	return fmt.Sprintf("%d rounds × %d connections, %d refused", rounds, conns, refused), nil
}

// settle waits until pid's RSS has not grown for a second (at most a minute).
func settle(pid int) {
	last, _ := procStatus(pid, "VmRSS")
	stable := time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		cur, err := procStatus(pid, "VmRSS")
		if err != nil {
			return
		}
		if cur > last+(1<<20) {
			last, stable = cur, time.Now()
		} else if time.Since(stable) > time.Second {
			return
		}
	}
}

// procStatus reads a kB field (VmRSS, VmHWM) of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// qgateProc is a qgate subprocess.
type qgateProc struct {
	addr string
	cmd  *exec.Cmd
	log  bytes.Buffer
}

func (q *qgateProc) stop() {
	_ = q.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = q.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = q.cmd.Process.Kill()
		<-done
	}
}

func startQgate(bin, backend string, extra ...string) (*qgateProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	q := &qgateProc{addr: addr}
	q.cmd = exec.Command(bin, append([]string{"--backend", backend, "--listen", addr, "--log-level", "warn"}, extra...)...)
	q.cmd.Stdout, q.cmd.Stderr = &q.log, &q.log
	q.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := q.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := dial(addr); err == nil {
			v, err := c.do("PING")
			c.Close()
			if err == nil && v == "PONG" {
				return q, nil
			}
		}
	}
	q.stop()
	return nil, fmt.Errorf("qgate did not answer PING: %s", q.log.String())
}

// buildQgate builds qgate from the repository above the working directory.
func buildQgate(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := ""
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/qgate/qgate\n")) {
			root = d
			break
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no qgate repository above " + wd)
		}
	}
	bin := filepath.Join(dir, "qgate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/qgate/qgate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// rconn is a minimal RESP2 client.
type rconn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dial(addr string) (*rconn, error) { return dialSize(addr, 16<<10) }

func dialSize(addr string, size int) (*rconn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &rconn{nc: nc, r: bufio.NewReaderSize(nc, size), w: bufio.NewWriterSize(nc, size)}, nil
}

func (c *rconn) Close() error { return c.nc.Close() }

func appendCmd(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

func (c *rconn) send(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *rconn) do(args ...string) (any, error) {
	if err := c.send(appendCmd(nil, args...)); err != nil {
		return nil, err
	}
	return c.read()
}

func (c *rconn) line() (string, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(2 * time.Minute))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(s) < 3 || s[len(s)-2] != '\r' {
		return "", fmt.Errorf("bad line %q", s)
	}
	return s[:len(s)-2], nil
}

// read reads one reply: string, int64, nil, []any or an error for "-…".
func (c *rconn) read() (any, error) {
	l, err := c.line()
	if err != nil {
		return nil, err
	}
	switch l[0] {
	case '+':
		return l[1:], nil
	case '-':
		return nil, errors.New(l[1:])
	case ':':
		return strconv.ParseInt(l[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(l[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(l[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("bad reply %q", l)
}

// skipCount reads one reply without keeping it and returns its bulk bytes.
func (c *rconn) skipCount() (int64, error) {
	l, err := c.line()
	if err != nil {
		return 0, err
	}
	switch l[0] {
	case '$':
		n, err := strconv.Atoi(l[1:])
		if err != nil || n < 0 {
			return 0, err
		}
		_, err = c.r.Discard(n + 2)
		return int64(n), err
	case '*':
		n, err := strconv.Atoi(l[1:])
		if err != nil {
			return 0, err
		}
		var total int64
		for range n {
			m, err := c.skipCount()
			if err != nil {
				return 0, err
			}
			total += m
		}
		return total, nil
	case '-':
		return 0, errors.New(l[1:])
	}
	return 0, nil
}
