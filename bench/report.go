package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Targets of the performance issue (README "Benchmarks"): at depth 1 qgate's ratio to direct Redis
// at least twemproxy's and its CPU per operation at most twemproxy's; the rest below.
const (
	targetDepth16   = 0.55 // qgate/direct throughput at pipeline depth 16 (64 B and 1 KiB)
	targetWakeupP99 = 0.3  // ms: qgate's BLPOP wake-up p99 may exceed direct Redis's by at most this
	targetEnvelope  = 0.85 // envelope on / envelope off throughput at depth 1 (costs ≤ 15 %)
)

// lookup returns the row of a scenario variant on a target, if measured.
func (b *bench) lookup(scenario, variant, tgt string) *row {
	for _, r := range b.rows {
		if r.Scenario == scenario && r.Variant == variant && r.Target == tgt && r.measured() {
			return r
		}
	}
	return nil
}

// ratio is median throughput of r over the same variant on tgt.
func (b *bench) ratio(r *row, tgt string) (float64, bool) {
	o := b.lookup(r.Scenario, r.Variant, tgt)
	if o == nil || !r.measured() || r == o {
		return 0, false
	}
	a, c := r.Throughput(), o.Throughput()
	if !a.OK || !c.OK || c.Med == 0 {
		return 0, false
	}
	return a.Med / c.Med, true
}

func isQgate(t string) bool { return strings.HasPrefix(t, tQgate) }

// human formats a rate with k/M suffixes.
func human(v float64) string {
	switch {
	case v >= 10e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 10e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func ms(s stat) string {
	if !s.OK {
		return "—"
	}
	switch {
	case s.Med >= 100:
		return fmt.Sprintf("%.0f", s.Med)
	case s.Med >= 10:
		return fmt.Sprintf("%.1f", s.Med)
	default:
		return fmt.Sprintf("%.3f", s.Med)
	}
}

func cpuCell(s stat) string {
	if !s.OK {
		return "—"
	}
	return fmt.Sprintf("%.2f", s.Med)
}

func ratioCell(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// tableHeader and cells are shared by the terminal and Markdown tables.
var tableHeader = []string{"Scenario", "Variant", "Target", "Throughput (median)", "min–max", "p50 ms", "p99 ms", "p99.9 ms",
	"proxy CPU s/Mop", "redis CPU s/Mop", "×direct", "×twemproxy"}

func (b *bench) cells(r *row) []string {
	c := []string{r.Scenario, r.Variant, r.Target}
	if r.Baseline {
		c[2] += " [baseline]"
	}
	if r.Status != "" {
		return append(c, r.Status, "", "", "", "", "", "", "", "")
	}
	th := r.Throughput()
	if !th.OK {
		status := "no result"
		if len(r.Errors) > 0 {
			status = "FAILED (see errors)"
		}
		return append(c, status, "", "", "", "", "", "", "", "")
	}
	var rd, rt string = "—", "—"
	if r.Target != tDirect && !r.Baseline {
		rd = ratioCell(b.ratio(r, tDirect))
	}
	if isQgate(r.Target) {
		rt = ratioCell(b.ratio(r, tTwemproxy))
	}
	spread := fmt.Sprintf("%s–%s", human(th.Min), human(th.Max))
	if len(r.Errors) > 0 {
		spread += fmt.Sprintf(" (%d/%d runs failed)", len(r.Errors), len(r.Errors)+len(r.samples))
	}
	return append(c,
		human(th.Med)+" "+r.Unit, spread,
		ms(r.Latency(50)), ms(r.Latency(99)), ms(r.Latency(99.9)),
		cpuCell(r.CPUPerMop(true)), cpuCell(r.CPUPerMop(false)), rd, rt)
}

// report prints the terminal table and writes the Markdown file and the SVG chart.
func (b *bench) report(stdout io.Writer) error {
	fmt.Fprintln(stdout)
	var rows [][]string
	for _, r := range b.rows {
		c := b.cells(r)
		if c[4] == "" {
			c = c[:4] // a status spans the figure columns
		}
		rows = append(rows, c)
	}
	writeTextTable(stdout, tableHeader, rows)
	for _, sec := range b.sections(false) {
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, sec)
	}

	if b.cfg.Out == "" {
		return nil
	}
	if err := os.MkdirAll(b.cfg.Out, 0o755); err != nil {
		return err
	}
	stamp := b.started.Format("20060102-150405")
	chartName := "chart-" + stamp + ".svg"
	chartPath := filepath.Join(b.cfg.Out, chartName)
	if err := os.WriteFile(chartPath, []byte(b.chart()), 0o644); err != nil {
		return err
	}
	mdPath := filepath.Join(b.cfg.Out, "RESULTS-"+stamp+".md")
	if err := os.WriteFile(mdPath, []byte(b.markdown(chartName)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s (%.0f s)\n", mdPath, chartPath, b.ended.Sub(b.started).Seconds())
	return nil
}

// writeTextTable prints aligned columns; a row shorter than the header (a status row) does not
// widen the column of its last cell.
func writeTextTable(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			if len(r) < len(header) && i == len(r)-1 {
				continue
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var sb strings.Builder
		for i, c := range cells {
			if i > 0 {
				sb.WriteString("  ")
			}
			sb.WriteString(c)
			if i < len(cells)-1 {
				sb.WriteString(strings.Repeat(" ", max(0, width[i]-len([]rune(c)))))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}

func mdTable(header []string, rows [][]string) string {
	var sb strings.Builder
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	sb.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		sb.WriteString(" --- |")
	}
	sb.WriteString("\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = esc(c)
		}
		sb.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return sb.String()
}

func mark(ok bool) string {
	if ok {
		return "✓ pass"
	}
	return "✗ FAIL"
}

// sections are the figures beyond the main table: idle clients, pub/sub, targets, notes, errors.
func (b *bench) sections(md bool) []string {
	var out []string
	h := func(title string) string {
		if md {
			return "## " + title + "\n\n"
		}
		return title + "\n"
	}
	table := func(header []string, rows [][]string) string {
		if md {
			return mdTable(header, rows)
		}
		var sb strings.Builder
		writeTextTable(&sb, header, rows)
		return sb.String()
	}
	bullet := func(lines []string) string {
		var sb strings.Builder
		for _, l := range lines {
			sb.WriteString("- " + l + "\n")
		}
		return sb.String()
	}

	if len(b.idle) > 0 {
		var rows [][]string
		for _, r := range b.idle {
			if r.Err != "" && r.RSSAfter == 0 {
				rows = append(rows, []string{r.Target, fmt.Sprint(r.Conns), "FAILED: " + r.Err, "", "", "", "", "", "", "", ""})
				continue
			}
			per := r.perClientKiB()
			perCell := fmt.Sprintf("%.2f", per)
			connCell := fmt.Sprint(r.BackendConns)
			if r.Target == tQgate && r.Mode == "BLPOP" {
				perCell += fmt.Sprintf(" (≤%.0f: %s)", idleTargetKiB, mark(per <= idleTargetKiB))
				connCell += fmt.Sprintf(" (≤%d: %s)", idleTargetConns, mark(r.BackendConns <= idleTargetConns))
			}
			check := fmt.Sprintf("one item per client pushed into Redis: %d/%d delivered, %d dup, %d left", r.Delivered, r.Conns, r.Duplicates, r.Leftover)
			clients := fmt.Sprintf("%d BLPOP on %d queues", r.Conns, r.Queues)
			if r.Mode == "SUBSCRIBE" {
				check = fmt.Sprintf("one PUBLISH on the backend: %d/%d received", r.Delivered, r.Conns)
				clients = fmt.Sprintf("%d SUBSCRIBE to 1 channel", r.Conns)
				connCell += fmt.Sprintf(", NUMSUB %d", r.BackendSubs)
			}
			if r.Err != "" {
				check = "FAILED: " + r.Err
			}
			rows = append(rows, []string{r.Target, clients,
				fmt.Sprintf("%.1f → %.1f MiB", float64(r.RSSBefore)/(1<<20), float64(r.RSSAfter)/(1<<20)),
				perCell, connCell, r.BackendInfo,
				fmt.Sprintf("%.2f s", r.ConnectTime.Seconds()), fmt.Sprintf("%.2f s", r.BlockTime.Seconds()),
				fmt.Sprintf("%.0f ms", float64(r.IdleCPU)/1e6), check, ""})
		}
		for i := range rows {
			rows[i] = rows[i][:10]
		}
		out = append(out, h("idle-blocked: idle connections blocked in BLPOP 0, or subscribed, each on a fresh process (RSS of qgate, of redis-server for direct)")+
			table([]string{"Target", "Clients", "RSS before → after", "RSS/client KiB", "backend conns", "qgate INFO",
				"connect", "all blocked/subscribed after", "CPU while idle (1 s; quick 0.3 s)", "delivery check"}, rows))
	}

	var ps [][]string
	for _, r := range b.rows {
		if r.Scenario != "pubsub-fanout" || r.Status != "" {
			continue
		}
		subs := r.value("backend_subscriptions")
		subCell := "—"
		if subs.OK {
			subCell = fmt.Sprintf("%.0f", subs.Med)
			if isQgate(r.Target) {
				subCell += " (target 1: " + mark(subs.Max == 1) + ")"
			}
		}
		st := r.value("subscribe_s")
		stCell := "—"
		if st.OK {
			stCell = fmt.Sprintf("%.2f s", st.Med)
		}
		ls := r.value("latency_samples")
		lsCell := "—"
		if ls.OK {
			lsCell = fmt.Sprintf("%.0f", ls.Med)
		}
		ps = append(ps, []string{r.Target, r.Variant, subCell, stCell, lsCell})
	}
	if len(ps) > 0 {
		out = append(out, h("pubsub-fanout: backend subscriptions (PUBSUB NUMSUB on the backend) and subscriber cost")+
			table([]string{"Target", "Variant", "backend subscriptions", "subscribe all", "latency samples/run"}, ps))
	}

	var ev [][]string
	for _, r := range b.rows {
		if r.Scenario != "envelope" || r.Target != tQgate || !r.measured() {
			continue
		}
		cell := func(tgt string) string {
			o := b.lookup(r.Scenario, r.Variant, tgt)
			if o == nil {
				return "—"
			}
			v, _ := b.ratio(o, tQgate)
			return fmt.Sprintf("%s ops/s (%.2f× plain), p99 %s ms, %s CPU s/Mop", human(o.Throughput().Med), v, ms(o.Latency(99)), cpuCell(o.CPUPerMop(true)))
		}
		ev = append(ev, []string{r.Variant,
			fmt.Sprintf("%s ops/s, p99 %s ms, %s CPU s/Mop", human(r.Throughput().Med), ms(r.Latency(99)), cpuCell(r.CPUPerMop(true))),
			cell(tQgateEnvelope), cell(tQgateSchema)})
	}
	if len(ev) > 0 {
		out = append(out, h("envelope: cost of qgate's JSON envelope (its default) and of JSON Schema validation, against qgate plain")+
			table([]string{"Variant", "qgate plain (envelope off)", "envelope on", "envelope + schema"}, ev))
	}

	if mc := b.metricsCostRows(); len(mc) > 0 {
		out = append(out, h("metrics-cost: the RESP hot path with the HTTP listener and metrics on (/metrics scraped every second) against qgate without --http, same run, interleaved")+
			table([]string{"Variant", "qgate (no --http)", "qgate (--http, scraped)", "on/off (medians)",
				"on/off per repetition: median (min–max)", "qgate CPU s/Mop off → on (per-rep median)", "budget (per-rep median)"}, mc))
	}

	if t := b.targetChecks(); len(t) > 0 {
		title := "Targets"
		if b.cfg.Quick {
			title += " — quick mode runs too briefly to judge them"
		}
		out = append(out, h(title)+table([]string{"Target", "Measured", "Result"}, t))
	}

	var notes []string
	for _, r := range b.rows {
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("%s %s → %s: %s", r.Scenario, r.Variant, r.Target, n))
		}
	}
	for _, l := range b.startupLog {
		notes = append(notes, "qgate at start-up: "+l)
	}
	if len(notes) > 0 {
		out = append(out, h("Notes")+bullet(notes))
	}
	var errs []string
	for _, r := range b.rows {
		for _, e := range r.Errors {
			errs = append(errs, fmt.Sprintf("%s %s → %s: %s", r.Scenario, r.Variant, r.Target, e))
		}
	}
	errs = append(errs, b.warnings...)
	if len(errs) > 0 {
		out = append(out, h("Errors and warnings (qgate misbehaviour shows up here)")+bullet(errs))
	}
	return out
}

// targetChecks compares the results with the performance targets (README "Benchmarks").
func (b *bench) targetChecks() [][]string {
	var out [][]string
	for _, r := range b.rows {
		if r.Target != tQgate || (r.Scenario != "rpush" && r.Scenario != "lpop") {
			continue
		}
		v, ok := b.ratio(r, tDirect)
		if !ok {
			continue
		}
		if !strings.Contains(r.Variant, "depth=1 ") {
			if strings.HasSuffix(r.Variant, " 16KiB") {
				continue // the target is for 64 B and 1 KiB
			}
			out = append(out, []string{fmt.Sprintf("%s %s: qgate ≥ %.2f× direct", r.Scenario, r.Variant, targetDepth16),
				fmt.Sprintf("%.2f×", v), mark(v >= targetDepth16)})
			continue
		}
		tw := b.lookup(r.Scenario, r.Variant, tTwemproxy)
		if tw == nil {
			continue
		}
		if tv, ok := b.ratio(tw, tDirect); ok {
			out = append(out, []string{fmt.Sprintf("%s %s: qgate ×direct ≥ twemproxy ×direct", r.Scenario, r.Variant),
				fmt.Sprintf("%.2f× vs %.2f×", v, tv), mark(v >= tv)})
		}
		qc, tc := r.CPUPerMop(true), tw.CPUPerMop(true)
		if qc.OK && tc.OK {
			out = append(out, []string{fmt.Sprintf("%s %s: qgate CPU/op ≤ twemproxy's", r.Scenario, r.Variant),
				fmt.Sprintf("%.2f vs %.2f µs", qc.Med, tc.Med), mark(qc.Med <= tc.Med)})
		}
	}
	for _, r := range b.rows {
		if r.Scenario != "envelope" || r.Target != tQgateEnvelope || !strings.Contains(r.Variant, "depth=1 ") {
			continue
		}
		if v, ok := b.ratio(r, tQgate); ok {
			out = append(out, []string{fmt.Sprintf("envelope %s: envelope on ≥ %.2f× envelope off", r.Variant, targetEnvelope),
				fmt.Sprintf("%.2f×", v), mark(v >= targetEnvelope)})
		}
	}
	for _, r := range b.rows {
		if r.Scenario != "at-least-once" || !isQgate(r.Target) || !r.measured() {
			continue
		}
		st := b.lookup(r.Scenario, r.Variant, tStreams)
		if st == nil {
			continue
		}
		if th, sth := r.Throughput(), st.Throughput(); th.OK && sth.OK && sth.Med > 0 {
			v := th.Med / sth.Med
			out = append(out, []string{fmt.Sprintf("at-least-once %s: ≥ %.1f× Redis Streams", r.Target, targetALSvsStreams),
				fmt.Sprintf("%.2f×", v), mark(v >= targetALSvsStreams)})
		}
	}
	for _, r := range b.rows {
		if r.Scenario != "blpop-wakeup" || !isQgate(r.Target) || !r.measured() {
			continue
		}
		d := b.lookup(r.Scenario, r.Variant, tDirect)
		if d == nil {
			continue
		}
		q99, d99 := r.Latency(99), d.Latency(99)
		if !q99.OK || !d99.OK {
			continue
		}
		diff := q99.Med - d99.Med
		out = append(out, []string{fmt.Sprintf("blpop-wakeup p99 %s within %.1f ms of direct", r.Target, targetWakeupP99),
			fmt.Sprintf("%.3f ms vs %.3f ms (%+.3f ms)", q99.Med, d99.Med, diff), mark(diff <= targetWakeupP99)})
	}
	for _, r := range b.idle {
		if r.Target != tQgate || r.Mode != "BLPOP" || r.RSSAfter == 0 {
			continue
		}
		out = append(out, []string{fmt.Sprintf("idle-blocked: ≤ %.0f KiB RSS per blocked client", idleTargetKiB),
			fmt.Sprintf("%.2f KiB", r.perClientKiB()), mark(r.perClientKiB() <= idleTargetKiB)})
		out = append(out, []string{fmt.Sprintf("idle-blocked: ≤ %d backend connections", idleTargetConns),
			fmt.Sprint(r.BackendConns), mark(r.BackendConns <= idleTargetConns)})
		out = append(out, []string{"idle-blocked: every blocked client served exactly once",
			fmt.Sprintf("%d/%d, %d duplicates, %d left", r.Delivered, r.Conns, r.Duplicates, r.Leftover), mark(r.Err == "")})
	}
	for _, r := range b.rows {
		if r.Scenario == "pubsub-fanout" && isQgate(r.Target) {
			if s := r.value("backend_subscriptions"); s.OK {
				out = append(out, []string{"pubsub-fanout: 1 backend subscription for all subscribers",
					fmt.Sprintf("%.0f", s.Max), mark(s.Max == 1)})
			}
		}
	}
	return out
}

// methodNotes explain how the figures were taken.
func (b *bench) methodNotes() []string {
	return []string{
		fmt.Sprintf("Every run: %s warm-up (excluded), then a %s measurement window; %d repetitions per target; targets interleaved round-robin per repetition (each repetition starts at the next target). Figures are the median over repetitions, min–max shows the spread of throughput; latency columns are the median of the per-repetition percentiles.",
			b.cfg.Warmup, b.cfg.Measure, b.cfg.Reps),
		"qgate runs with a generated config: every queue and channel is plain (envelope: false) except bench:env:* (qgate's default envelope) and bench:schema:* (envelope + JSON Schema), used only by the envelope scenario; so \"qgate\" rows are the plain path.",
		"Clients are closed loops on their own connections (raw RESP, no client library). At pipeline depth d a client writes d commands, then reads d replies; each of the d commands is recorded with the latency of its round trip (first write → last reply), so p50/p99 at depth 16 are per-command latencies that include waiting for the whole batch, not round-trip time ÷ 16. Throughput counts commands whose batch completed inside the window.",
		"lpop pops from a list pre-filled straight into Redis (sized from the fastest rate seen so far); a run that empties the list ends its window there.",
		"proxy CPU s/Mop = CPU seconds (utime+stime from /proc/PID/stat) the qgate or twemproxy process used in the window per million operations; redis CPU s/Mop is the same for redis-server. For pubsub-fanout, operations are deliveries.",
		"×direct = median throughput ÷ direct Redis's median throughput for the same variant; ×twemproxy likewise. Above 1 would mean faster than the reference.",
		"blpop-wakeup: one producer pushes one item at a time (send time in the payload) and waits until a blocked consumer got it; latency = RPUSH sent → BLPOP reply read. \"qgate (push→redis)\" pushes straight into Redis while consumers block in qgate (a legacy producer).",
		fmt.Sprintf("pubsub-fanout: latency = PUBLISH sent → the last subscriber read the message, one message in flight (the phase runs past its window, up to 4 windows, to collect %d latencies); throughput = deliveries/s with up to %d messages in flight. Backend subscriptions = PUBSUB NUMSUB asked of the backend directly. The load generator reads every subscriber socket on the same 2 cores, so deliveries/s is partly bound by the bench itself.", pubsubMinSamples, pubsubInFlight),
		"idle-blocked: each target gets a fresh redis-server (and qgate) so nothing else is in the backend's CLIENT LIST; connections are plain sockets that send BLPOP <queue> 0 and are never read until the end. RSS is VmRSS of qgate (of redis-server for direct) before connecting and 1 s after all clients show in INFO blocked_clients; backend conns = CLIENT LIST lines on the backend less the bench's own. Afterwards one item per client is pushed straight into Redis and every client must receive exactly one.",
		"at-least-once baselines run straight against the same redis-server: Redis Streams (producers XADD with the send time in a field; one consumer group, consumers XREADGROUP COUNT 16 then XACK; latency = XADD sent → XACK reply) and asynq v0.26 with default settings (Concurrency = consumers; latency = Enqueue called → handler started). Producers keep at most 4 messages per client in flight so latency measures the path, not a growing backlog.",
		"The load generator, redis-server and the proxy share the same cores, so absolute numbers are lower than on separate machines; ratios are the figures to compare.",
	}
}

func (b *bench) markdown(chartName string) string {
	var sb strings.Builder
	mode := "full"
	if b.cfg.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&sb, "# qgate bench results (%s mode)\n\n", mode)
	fmt.Fprintf(&sb, "Command:\n\n```\n%s\n```\n\n", b.cfg.CmdLine)
	fmt.Fprintf(&sb, "- Date: %s (took %.0f s)\n", b.started.Format(time.RFC3339), b.ended.Sub(b.started).Seconds())
	for _, m := range b.machine {
		fmt.Fprintf(&sb, "- Machine: %s\n", m)
	}
	fmt.Fprintf(&sb, "- redis-server %s; qgate %s (qgate flags: %s); twemproxy: %s\n",
		redisVersion(b.redis.Addr), gitDescribe(), strings.Join(b.qgateArgs(), " "), b.twemDesc())
	fmt.Fprintf(&sb, "- N = %d clients, pipeline depths %v, payloads %v\n\n", b.cfg.Clients, b.cfg.Depths, b.cfg.Payloads)
	var rows [][]string
	for _, r := range b.rows {
		c := b.cells(r)
		c = append(c, strings.Join(append(append([]string(nil), r.Notes...), prefixAll("ERROR: ", r.Errors)...), "; "))
		rows = append(rows, c)
	}
	sb.WriteString(mdTable(append(append([]string(nil), tableHeader...), "Notes"), rows))
	fmt.Fprintf(&sb, "\n![qgate/direct throughput ratios](%s)\n\n", chartName)
	for _, sec := range b.sections(true) {
		sb.WriteString(sec + "\n")
	}
	sb.WriteString("## Method\n\n")
	for _, n := range b.methodNotes() {
		sb.WriteString("- " + n + "\n")
	}
	return sb.String()
}

func prefixAll(p string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = p + s
	}
	return out
}

// shortVariant fits a variant into a chart label: "N=50 depth=16 1KiB" → "N=50 d=16 1KiB",
// "K=50 consumers, 1 key" → "K=50".
func shortVariant(v string) string {
	v, _, _ = strings.Cut(v, ",")
	v = strings.NewReplacer("depth=", "d=", " consumers", "", " subscribers", "", " 64B JSON", "").Replace(v)
	var keep []string
	for _, f := range strings.Fields(v) {
		if !strings.HasPrefix(f, "N=") { // N is in every row; the chart's title says so
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

// chart draws qgate/direct throughput ratios (and twemproxy/direct for context) as a horizontal
// bar chart; whiskers show qgate's min–max over the repetitions against direct's median.
func (b *bench) chart() string {
	type bar struct {
		label        string
		q, qmin, qmx float64
		t            float64
		hasT         bool
	}
	var bars []bar
	for _, r := range b.rows {
		if !isQgate(r.Target) || !r.measured() {
			continue
		}
		d := b.lookup(r.Scenario, r.Variant, tDirect)
		if d == nil {
			continue
		}
		dm := d.Throughput().Med
		if dm == 0 {
			continue
		}
		th := r.Throughput()
		label := r.Scenario + " " + shortVariant(r.Variant)
		switch {
		case r.Target != tQgate:
			label += " " + strings.TrimPrefix(r.Target, tQgate+" ")
		case r.Scenario == "envelope":
			label += " (plain)"
		}
		br := bar{label: label, q: th.Med / dm, qmin: th.Min / dm, qmx: th.Max / dm}
		if r.Target == tQgate {
			if tw := b.lookup(r.Scenario, r.Variant, tTwemproxy); tw != nil {
				br.t, br.hasT = tw.Throughput().Med/dm, true
			}
		}
		bars = append(bars, br)
	}
	const (
		left, right, top, groupH, barH = 270.0, 40.0, 70.0, 34.0, 12.0
		plotW                          = 560.0
	)
	scale := 1.2
	for _, br := range bars {
		scale = math.Max(scale, math.Max(br.qmx, br.t)*1.05)
	}
	scale = math.Ceil(scale*4) / 4
	height := top + groupH*float64(max(len(bars), 1)) + 50
	width := left + plotW + right
	x := func(v float64) float64 { return left + plotW*v/scale }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%.0f" y="22" font-size="15" font-weight="bold">Throughput relative to direct Redis (N=%d clients, median of %d repetitions)</text>`+"\n", 10.0, b.cfg.Clients, b.cfg.Reps)
	fmt.Fprintf(&sb, `<rect x="10" y="34" width="12" height="12" fill="#2b6cb0"/><text x="28" y="45">qgate ÷ direct (whisker: min–max)</text>`+"\n")
	fmt.Fprintf(&sb, `<rect x="260" y="34" width="12" height="12" fill="#a0aec0"/><text x="278" y="45">twemproxy ÷ direct</text>`+"\n")
	bottom := top + groupH*float64(len(bars))
	for v := 0.0; v <= scale+1e-9; v += 0.25 {
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#e2e8f0"/>`+"\n", x(v), top-6, x(v), bottom)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#4a5568">%g×</text>`+"\n", x(v), bottom+16, v)
	}
	for _, ref := range []struct {
		v     float64
		color string
		label string
	}{{1, "#c53030", "= direct"}, {targetDepth16, "#dd6b20", "0.55 (depth 16)"}} {
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x(ref.v), top-10, x(ref.v), bottom, ref.color)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" text-anchor="middle" font-size="10" fill="%s">%s</text>`+"\n", x(ref.v), top-13, ref.color, ref.label)
	}
	for i, br := range bars {
		y := top + groupH*float64(i)
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y+barH+2, html.EscapeString(br.label))
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" fill="#2b6cb0"/>`+"\n", left, y+2, x(br.q)-left, barH)
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#1a202c"/>`+"\n", x(br.qmin), y+2+barH/2, x(br.qmx), y+2+barH/2)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="11">%.2f×</text>`+"\n", x(math.Max(br.q, br.qmx))+4, y+barH, br.q)
		if br.hasT {
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" fill="#a0aec0"/>`+"\n", left, y+4+barH, x(br.t)-left, barH/1.5)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="10" fill="#4a5568">%.2f×</text>`+"\n", x(br.t)+4, y+4+barH+barH/1.5, br.t)
		}
	}
	if len(bars) == 0 {
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f">no qgate/direct pair measured</text>`+"\n", left, top+20)
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}
