// Command bench measures qgate side by side with direct Redis, twemproxy and the queue systems users
// would pick instead (Redis Streams consumer groups, asynq). It starts everything it needs on
// loopback: a redis-server, qgate built from this tree (run as a subprocess so its RSS and CPU time
// can be read from /proc), and twemproxy (nutcracker) when it is installed.
//
//	cd bench && go run . [-quick] [-scenarios a,b] [-out results]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/qgate/qgate/proxy/proxytest"
)

// config is what one bench run measures and for how long.
type config struct {
	Quick       bool
	Scenarios   []string
	Out         string
	Clients     int           // N: concurrent clients for rpush/lpop, consumers for blpop-wakeup
	Reps        int           // repetitions per target
	Warmup      time.Duration // excluded from every run
	Measure     time.Duration // measurement window of every run
	Depths      []int
	Payloads    []int
	Subscribers int // pubsub-fanout
	IdleConns   int // idle-blocked
	IdleQueues  int
	QgateArgs   []string
	Quiet       bool // no progress line (tests)
	CmdLine     string
}

func defaultConfig(quick bool) config {
	c := config{
		Quick:      quick,
		Clients:    50,
		Depths:     []int{1, 16},
		IdleQueues: 10,
	}
	if quick {
		c.Reps = 2
		c.Warmup = 100 * time.Millisecond
		c.Measure = 300 * time.Millisecond
		c.Payloads = []int{64}
		c.Subscribers = 1000
		c.IdleConns = 2000
	} else {
		c.Reps = 5
		c.Warmup = 500 * time.Millisecond
		c.Measure = 1500 * time.Millisecond
		c.Payloads = []int{64, 1 << 10, 16 << 10}
		c.Subscribers = 10000
		c.IdleConns = 10000
	}
	return c
}

// target is one system the load is sent to.
type target struct {
	name string
	addr string
	p    *proc // the proxy process (nil for direct Redis)
}

const (
	tDirect    = "direct"
	tQgate     = "qgate"
	tTwemproxy = "twemproxy"
)

// bench is one run of the tool.
type bench struct {
	cfg  config
	dir  string
	prog *progress

	redis     *proxytest.Redis
	redisPID  int
	admin     *rconn // direct connection to the backend for set-up, clean-up and checks
	qgateBin  string
	qgateConf string
	qgate     *proc
	twem      *proc
	twemNote  string // why twemproxy is not measured, if it is not

	rows       []*row
	idle       []idleResult
	warnings   []string // misbehaviour seen outside a single row
	startupLog []string // what qgate warned about at start-up
	rateEst    map[string]float64
	seq        atomic.Int64
	started    time.Time
	ended      time.Time
	machine    []string
}

// scenario is one named measurement.
type scenario struct {
	name string
	desc string
	runs func(b *bench) int // progress steps
	run  func(b *bench)
}

var scenarios = []scenario{
	{"rpush", "RPUSH throughput and latency, N clients, pipeline depth × payload", listRuns, func(b *bench) { b.runList("rpush") }},
	{"lpop", "LPOP throughput and latency from a pre-filled list, N clients, pipeline depth × payload", listRuns, func(b *bench) { b.runList("lpop") }},
	{"blpop-wakeup", "RPUSH → blocked BLPOP reply latency, K consumers blocked on one key", wakeupRuns, (*bench).runWakeup},
	{"pubsub-fanout", "PUBLISH → last delivery latency and deliveries/s, S subscribers on one channel", pubsubRuns, (*bench).runPubSub},
	{"idle-blocked", "RSS and backend connections for many idle clients blocked in BLPOP, and for as many subscribers", func(*bench) int { return 4 }, (*bench).runIdle},
	{"envelope", "RPUSH/LPOP through qgate with envelope off, on, and on + JSON Schema validation", envelopeRuns, (*bench).runEnvelope},
	{"at-least-once", "push → pop → ack end to end; Redis Streams and asynq baselines", alsRuns, (*bench).runAtLeastOnce},
	{"metrics-cost", "RPUSH/LPOP through qgate without and with --http (and /metrics scraped every second): the ratio on/off", metricsRuns, (*bench).runMetricsCost},
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

func main() {
	code, err := mainErr(os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	os.Exit(code)
}

func mainErr(args []string, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "quick mode: fewer variants, short runs (CI smoke test, < 60 s)")
	scen := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
	out := fs.String("out", "results", "folder for RESULTS-<timestamp>.md and chart-<timestamp>.svg")
	clients := fs.Int("clients", 0, "concurrent clients N (default 50)")
	reps := fs.Int("reps", 0, "repetitions per target (default: quick 2, full 5)")
	warm := fs.Duration("warmup", 0, "warm-up excluded from each run (default: quick 100ms, full 500ms)")
	meas := fs.Duration("measure", 0, "measurement window of each run (default: quick 300ms, full 1.5s)")
	subs := fs.Int("subscribers", 0, "pubsub-fanout subscribers (default: quick 1000, full 10000)")
	idle := fs.Int("idle-clients", 0, "idle-blocked connections (default: quick 2000, full 10000)")
	depths := fs.String("depths", "", "pipeline depths for rpush/lpop/envelope, comma-separated (default 1,16)")
	payloads := fs.String("payloads", "", "payload sizes in bytes for rpush/lpop, comma-separated (default: quick 64, full 64,1024,16384)")
	qargs := fs.String("qgate-args", "", "extra flags for the qgate under test, space separated")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	cfg := defaultConfig(*quick)
	if *scen != "" {
		for _, s := range strings.Split(*scen, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !knownScenario(s) {
				return 2, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(scenarioNames(), ", "))
			}
			cfg.Scenarios = append(cfg.Scenarios, s)
		}
	}
	cfg.Out = *out
	setIf(&cfg.Clients, *clients)
	setIf(&cfg.Reps, *reps)
	setIf(&cfg.Subscribers, *subs)
	setIf(&cfg.IdleConns, *idle)
	if *warm > 0 {
		cfg.Warmup = *warm
	}
	if *meas > 0 {
		cfg.Measure = *meas
	}
	var err error
	if *depths != "" {
		if cfg.Depths, err = intList(*depths); err != nil {
			return 2, fmt.Errorf("-depths: %w", err)
		}
	}
	if *payloads != "" {
		if cfg.Payloads, err = intList(*payloads); err != nil {
			return 2, fmt.Errorf("-payloads: %w", err)
		}
	}
	cfg.QgateArgs = strings.Fields(*qargs)
	cfg.CmdLine = "cd bench && go run ." + argString(args)
	b, err := run(cfg, stdout)
	if err != nil {
		return 1, err
	}
	if b.failed() {
		return 1, errors.New("some runs failed; see Errors in the report")
	}
	return 0, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func setIf(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

func knownScenario(name string) bool {
	for _, s := range scenarios {
		if s.name == name {
			return true
		}
	}
	return false
}

func argString(args []string) string {
	var sb strings.Builder
	for _, a := range args {
		sb.WriteByte(' ')
		if strings.ContainsAny(a, " \t'\"") {
			sb.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		} else {
			sb.WriteString(a)
		}
	}
	return sb.String()
}

func (c config) wants(name string) bool {
	if len(c.Scenarios) == 0 {
		return true
	}
	for _, s := range c.Scenarios {
		if s == name {
			return true
		}
	}
	return false
}

// run sets up the servers, runs the chosen scenarios and writes the report.
func run(cfg config, stdout io.Writer) (*bench, error) {
	b := &bench{cfg: cfg, rateEst: map[string]float64{}, started: time.Now()}
	dir, err := os.MkdirTemp("", "qgate-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	defer os.RemoveAll(dir)
	b.machine = []string{
		fmt.Sprintf("%d cores (runtime.NumCPU), CPU: %s", runtime.NumCPU(), cpuModel()),
		fmt.Sprintf("memory %s, kernel %s, %s, load average at start %s", memTotal(), kernel(), runtime.Version(), loadAvg()),
	}
	mode := "full"
	if cfg.Quick {
		mode = "quick"
	}
	fmt.Fprintf(stdout, "qgate bench (%s mode): %s\n", mode, b.machine[0])
	fmt.Fprintf(stdout, "  %s\n", b.machine[1])
	defer b.teardown()
	if err := b.setup(); err != nil {
		return b, err
	}
	fmt.Fprintf(stdout, "  redis-server %s at %s, qgate %s at %s (pid %d), twemproxy: %s\n",
		redisVersion(b.redis.Addr), b.redis.Addr, gitDescribe(), b.qgate.Addr, b.qgate.PID, b.twemDesc())

	total := 0
	for _, s := range scenarios {
		if cfg.wants(s.name) {
			total += s.runs(b)
		}
	}
	b.prog = newProgress(total, cfg.Quiet)
	for _, s := range scenarios {
		if !cfg.wants(s.name) {
			continue
		}
		s.run(b)
		if b.qgate.Exited() {
			b.warn("qgate exited during %s: %s", s.name, tail(b.qgate.log.String(), 2000))
			if err := b.restartQgate(); err != nil {
				b.prog.finish()
				return b, err
			}
		}
	}
	b.prog.finish()
	b.ended = time.Now()
	b.scanQgateLog(b.qgate)
	if err := b.report(stdout); err != nil {
		return b, err
	}
	return b, nil
}

func (b *bench) twemDesc() string {
	if b.twem != nil {
		return fmt.Sprintf("%s at %s (pid %d)", twemproxyVersion(b.twem.cmd.Path), b.twem.Addr, b.twem.PID)
	}
	return b.twemNote
}

func (b *bench) setup() error {
	var err error
	if b.qgateBin, err = buildQgate(b.dir); err != nil {
		return err
	}
	if b.redis, err = launchRedis(filepath.Join(b.dir, "redis")); err != nil {
		return err
	}
	if b.redisPID, err = redisPID(b.redis.Addr); err != nil {
		return fmt.Errorf("redis pid: %w", err)
	}
	if b.admin, err = dial(b.redis.Addr); err != nil {
		return err
	}
	if err := b.writeQgateConfig(); err != nil {
		return err
	}
	if b.qgate, err = startQgate(b.qgateBin, b.redis.URL(), b.qgateArgs()...); err != nil {
		return err
	}
	if bin := twemproxyPath(); bin == "" {
		b.twemNote = "skipped: not installed (apt-get install nutcracker)"
		fmt.Fprintln(os.Stderr, "twemproxy skipped: nutcracker is not installed (apt-get install nutcracker)")
	} else if b.twem, err = startTwemproxy(bin, b.dir, b.redis.Addr); err != nil {
		b.twemNote = "skipped: failed to start: " + err.Error()
		b.warn("twemproxy failed to start: %v", err)
		b.twem = nil
	}
	return nil
}

// qgateConfig holds the rules of the qgate under test: queues under bench:env: keep qgate's default
// (envelope on), bench:schema: add a JSON Schema, bench:als:explicit: and bench:als:nextpop: are
// at-least-once (envelope on; ack explicit / next-pop; the at-least-once scenario), and everything
// else — all other scenarios — is the plain path (envelope off), which the README's throughput targets
// are about.
const qgateConfig = `queues:
  - match: "bench:env:*"
    envelope: true
  - match: "bench:schema:*"
    schema: task.json
  - match: "bench:als:explicit:*"
    delivery: at-least-once
  - match: "bench:als:nextpop:*"
    delivery: at-least-once
    ack: next-pop
  - match: "bench:fifo:*"
    envelope: false
    global_fifo: true
  - match: "*"
    envelope: false
channels:
  - match: "*"
    envelope: false
`

// taskSchema validates the envelope scenario's JSON payload.
const taskSchema = `{"type":"object","required":["to"],"properties":{"to":{"type":"string"},"body":{"type":"string"}}}`

// writeQgateConfig writes qgate.yml and its schema into the work directory and checks them with
// qgate check-config.
func (b *bench) writeQgateConfig() error {
	b.qgateConf = filepath.Join(b.dir, "qgate.yml")
	if err := os.WriteFile(b.qgateConf, []byte(qgateConfig), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.dir, "task.json"), []byte(taskSchema), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(b.qgateBin, "check-config", b.qgateConf).CombinedOutput(); err != nil {
		return fmt.Errorf("qgate check-config %s: %w\n%s", b.qgateConf, err, out)
	}
	return nil
}

// qgateArgs are the flags of every qgate the bench starts: its rules and room for the connection
// scenarios.
func (b *bench) qgateArgs() []string {
	return append([]string{"--config", b.qgateConf, "--max-clients", "16000"}, b.cfg.QgateArgs...)
}

func (b *bench) restartQgate() error {
	b.scanQgateLog(b.qgate)
	q, err := startQgate(b.qgateBin, b.redis.URL(), b.qgateArgs()...)
	if err != nil {
		return fmt.Errorf("restart qgate: %w", err)
	}
	b.qgate = q
	return nil
}

func (b *bench) teardown() {
	if b.prog != nil {
		b.prog.finish()
	}
	b.twem.Stop()
	b.qgate.Stop()
	if b.admin != nil {
		_ = b.admin.Close()
	}
	if b.redis != nil {
		_ = b.redis.Close()
	}
}

// scanQgateLog turns every warning or error qgate logged while under load into a report warning;
// what it logged at start-up (configuration advice) goes into the report's notes.
func (b *bench) scanQgateLog(p *proc) {
	if p == nil {
		return
	}
	text := p.log.String()
	startup, later := text[:min(p.startLen, len(text))], text[min(p.startLen, len(text)):]
	for _, line := range strings.Split(startup, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			b.startupLog = appendUniq(b.startupLog, strings.TrimSpace(line[strings.Index(line, "level="):]))
		}
	}
	n := 0
	for _, line := range strings.Split(later, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || strings.HasPrefix(line, "panic") {
			if n < 10 {
				b.warn("qgate logged: %s", strings.TrimSpace(line))
			}
			n++
		}
	}
	if n > 10 {
		b.warn("qgate logged %d more warnings/errors", n-10)
	}
}

func (b *bench) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b.warnings = appendUniq(b.warnings, msg)
	if b.prog != nil {
		b.prog.log("warning: %s", msg)
	}
}

func (b *bench) failed() bool {
	for _, r := range b.rows {
		if len(r.Errors) > 0 {
			return true
		}
	}
	return false
}

// targets lists the systems a scenario runs against: direct Redis, qgate and (if wanted and
// running) twemproxy.
func (b *bench) targets(twem bool) []target {
	ts := []target{{tDirect, b.redis.Addr, nil}, {tQgate, b.qgate.Addr, b.qgate}}
	if twem && b.twem != nil {
		ts = append(ts, target{tTwemproxy, b.twem.Addr, b.twem})
	}
	return ts
}

// rotate starts repetition rep at a different target, so no target always runs first or last.
func rotate(ts []target, rep int) []target {
	out := make([]target, 0, len(ts))
	for i := range ts {
		out = append(out, ts[(i+rep)%len(ts)])
	}
	return out
}

// newRow adds a row to the report.
func (b *bench) newRow(scenario, variant, tgt, unit string) *row {
	r := &row{Scenario: scenario, Variant: variant, Target: tgt, Unit: unit}
	b.rows = append(b.rows, r)
	return r
}

// rowFor finds or adds the row of (scenario, variant, target).
func (b *bench) rowFor(scenario, variant, tgt, unit string) *row {
	for _, r := range b.rows {
		if r.Scenario == scenario && r.Variant == variant && r.Target == tgt {
			return r
		}
	}
	return b.newRow(scenario, variant, tgt, unit)
}

// twemproxyRow records that twemproxy cannot run a scenario (or is not there).
func (b *bench) twemproxyRow(scenario, variant, why string) {
	status := "unsupported (" + why + ")"
	if b.twem == nil {
		status = "twemproxy " + b.twemNote
	}
	b.newRow(scenario, variant, tTwemproxy, "").Status = status
}

// cpuSnap is the CPU time used so far by the proxy under test and by redis-server.
type cpuSnap struct{ proxy, redis time.Duration }

func (b *bench) snap(t target) cpuSnap {
	s := cpuSnap{proxy: -1, redis: -1}
	if t.p != nil {
		if d, err := procCPU(t.p.PID); err == nil {
			s.proxy = d
		}
	}
	if d, err := procCPU(b.redisPID); err == nil {
		s.redis = d
	}
	return s
}

func (s cpuSnap) since(prev cpuSnap) (proxy, redis time.Duration) {
	proxy, redis = -1, -1
	if s.proxy >= 0 && prev.proxy >= 0 {
		proxy = s.proxy - prev.proxy
	}
	if s.redis >= 0 && prev.redis >= 0 {
		redis = s.redis - prev.redis
	}
	return proxy, redis
}

func (b *bench) key(kind string) string {
	return fmt.Sprintf("bench:%s:%d", kind, b.seq.Add(1))
}

// unlink deletes keys straight on the backend.
func (b *bench) unlink(keys ...string) {
	if _, err := b.admin.do(append([]string{"UNLINK"}, keys...)...); err != nil {
		b.warn("UNLINK on the backend: %v", err)
	}
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func sizeLabel(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}
