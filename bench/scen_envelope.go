package main

import (
	"fmt"
	"strings"
)

const (
	tQgateEnvelope = "qgate (envelope)"
	tQgateSchema   = "qgate (envelope+schema)"
)

// envelopeKinds are the commands the envelope scenario measures (quick mode: RPUSH only).
func (b *bench) envelopeKinds() []string {
	if b.cfg.Quick {
		return []string{"rpush"}
	}
	return []string{"rpush", "lpop"}
}

func envelopeRuns(b *bench) int { return len(b.envelopeKinds()) * len(b.cfg.Depths) * b.cfg.Reps * 4 }

// envelopeTask is a 64-byte JSON task that passes taskSchema.
var envelopeTask = `{"to":"user@example.com","body":"` + strings.Repeat("x", 34) + `"}`

// runEnvelope measures what qgate's JSON envelope (its default) and JSON Schema validation cost:
// the same RPUSH/LPOP load straight to Redis, through qgate with envelope off (plain), on, and on
// with a schema. LPOP pops items pushed through the same target, so envelopes are unwrapped.
func (b *bench) runEnvelope() {
	type etarget struct {
		target
		prefix string
		via    bool
	}
	q := b.targets(false)[1]
	ts := []etarget{
		{b.targets(false)[0], "bench:plain", false},
		{q, "bench:plain", false},
		{target{tQgateEnvelope, q.addr, q.p}, "bench:env", true},
		{target{tQgateSchema, q.addr, q.p}, "bench:schema", true},
	}
	for _, kind := range b.envelopeKinds() {
		for _, depth := range b.cfg.Depths {
			variant := fmt.Sprintf("%s N=%d depth=%d 64B JSON", kind, b.cfg.Clients, depth)
			for rep := 0; rep < b.cfg.Reps; rep++ {
				for i := range ts {
					t := ts[(i+rep)%len(ts)]
					r := b.rowFor("envelope", variant, t.name, "ops/s")
					b.prog.step(fmt.Sprintf("envelope %s → %s, rep %d/%d", variant, t.name, rep+1, b.cfg.Reps))
					b.listSample(t.target, listSpec{kind: kind, depth: depth, prefix: t.prefix, payload: envelopeTask,
						est: fmt.Sprintf("%d/%d", depth, len(envelopeTask)), viaProx: t.via}, r)
				}
			}
		}
	}
}
