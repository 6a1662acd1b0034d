package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickRPushSmoke runs the rpush scenario end to end (redis-server, qgate built from the tree,
// twemproxy if installed) with a tiny configuration and checks the table, the Markdown and the chart.
func TestQuickRPushSmoke(t *testing.T) {
	cfg := defaultConfig(true)
	cfg.Scenarios = []string{"rpush", "envelope"}
	cfg.Clients = 4
	cfg.Reps = 1
	cfg.Warmup = 50 * time.Millisecond
	cfg.Measure = 100 * time.Millisecond
	cfg.Out = t.TempDir()
	cfg.Quiet = true
	cfg.CmdLine = "go test"
	var out bytes.Buffer
	b, err := run(cfg, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if b.failed() {
		t.Fatalf("runs failed:\n%s", out.String())
	}
	for _, depth := range []string{"depth=1 ", "depth=16 "} {
		for _, tgt := range []string{tDirect, tQgate} {
			var r *row
			for _, x := range b.rows {
				if x.Scenario == "rpush" && x.Target == tgt && strings.Contains(x.Variant, depth) {
					r = x
				}
			}
			if r == nil || !r.measured() || r.Throughput().Med <= 0 || !r.Latency(99).OK {
				t.Errorf("rpush %s %s: no measurement in\n%s", depth, tgt, out.String())
			}
		}
	}
	if q := b.lookup("rpush", "N=4 depth=1 64B", tQgate); q != nil && !q.CPUPerMop(true).OK {
		t.Errorf("no qgate CPU per operation")
	}
	for _, want := range []string{"rpush", "×direct", "qgate (envelope+schema)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out.String())
		}
	}
	md, _ := filepath.Glob(filepath.Join(cfg.Out, "RESULTS-*.md"))
	svg, _ := filepath.Glob(filepath.Join(cfg.Out, "chart-*.svg"))
	if len(md) != 1 || len(svg) != 1 {
		t.Fatalf("results folder: md %v, svg %v", md, svg)
	}
	mdText, _ := os.ReadFile(md[0])
	if !strings.Contains(string(mdText), "| rpush | N=4 depth=16 64B | qgate |") || !strings.Contains(string(mdText), "go test") {
		t.Errorf("Markdown lacks the qgate row or the command:\n%s", mdText)
	}
	svgText, _ := os.ReadFile(svg[0])
	if !strings.HasPrefix(string(svgText), "<svg") || !strings.Contains(string(svgText), "rpush d=1 64B") {
		t.Errorf("chart lacks the rpush bars:\n%s", svgText)
	}
}

func TestInfoField(t *testing.T) {
	info := "# Clients\r\nconnected_clients:3\r\nblocked_clients:12\r\n"
	if v, ok := infoField(info, "blocked_clients"); !ok || v != "12" {
		t.Errorf("blocked_clients = %q, %v", v, ok)
	}
	if _, ok := infoField(info, "clients"); ok {
		t.Errorf("matched a field by suffix")
	}
}

func TestParseXRead(t *testing.T) {
	v := []any{[]any{"s", []any{
		[]any{"1-0", []any{"ts", "42", "p", "x"}},
		[]any{"1-1", []any{"p", "y", "ts", "7"}},
	}}}
	ids, sent, err := parseXRead(v)
	if err != nil || strings.Join(ids, ",") != "1-0,1-1" || len(sent) != 2 || sent[0] != 42 || sent[1] != 7 {
		t.Errorf("parseXRead = %v %v %v", ids, sent, err)
	}
}
