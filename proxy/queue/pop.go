package queue

import "strconv"

// Pops of at-most-once queues (proxy/DESIGN.md, "Delivery without loss"): the items go into this
// instance's transit record (transit.go) until the reply that carries them is written (Settle).

// MaxPopChunk bounds the items one backend script pops (a larger COUNT takes several steps).
const MaxPopChunk = transitChunk

// Pop is items taken from a queue for a reply that is not written yet.
type Pop struct {
	Key      string
	Left     bool
	Items    []string
	Receipts []string // at-least-once queues: each item's lease receipt ("" for items without envelope)

	parts  []*transitPop // the transit records holding Items, in pop order
	leased bool          // at-least-once: the items stay leased in Redis whatever happens to the reply
}

// Pop pops from an at-most-once queue through the transit record. count < 0 pops one item without
// COUNT; otherwise up to count items (count >= 0), in scripts of at most MaxPopChunk items: the first
// is sent with the batch, the rest follow it when the result is read (so a large COUNT is not one
// atomic step). The result is nil when the list was empty (Redis's nil reply). Pass a non-nil Pop to
// Settle once its reply was written or could not be.
func (e *Engine) Pop(key string, left bool, count int64) *Result[*Pop] {
	countArg := ""
	if count >= 0 {
		countArg = strconv.FormatInt(min(count, MaxPopChunk), 10)
	}
	o := &popOp{e: e, count: count}
	if err := e.transit.initPop(&o.first, e.ctx, key, left, countArg); err != nil {
		return failed[*Pop](err)
	}
	o.src = o
	o.Result.pop = &o.first
	return &o.Result
}

// popOp is a Pop operation with all it needs in one allocation: its result, its first transit pop and
// the Pop it returns (a worker's LPOP is the hot path: proxy/DESIGN.md "Backend multiplexer").
type popOp struct {
	Result[*Pop]
	e     *Engine
	count int64 // as Pop's count
	first transitPop
	out   Pop
	part  [1]*transitPop
}

// value reads the first pop's items and, for a COUNT above MaxPopChunk, pops the rest in steps.
func (o *popOp) value() (*Pop, error) {
	first := &o.first
	items, err := first.result()
	if err != nil || items == nil {
		return nil, err
	}
	o.part[0] = first
	p := &o.out
	*p = Pop{Key: first.key, Left: first.left, Items: items, parts: o.part[:]}
	last := first
	for got := int64(len(items)); o.count >= 0 && got < o.count && len(last.items) == MaxPopChunk; {
		next, err := o.e.transit.newPop(o.e.ctx, first.key, first.left, strconv.FormatInt(min(o.count-got, MaxPopChunk), 10))
		if err != nil {
			break
		}
		_ = o.e.cmds().Process(o.e.ctx, next.cmd)
		more, err := next.result()
		if err != nil || len(more) == 0 {
			break // what was popped so far is the reply; the rest stays in the list
		}
		p.Items = append(p.Items, more...)
		p.parts = append(p.parts, next)
		last = next
		got += int64(len(more))
	}
	return p, nil
}

// Settle ends the pops of a reply: delivered (the reply was written) or not. Items of transit pops
// are forgotten or given back from their record; leased items stay leased either way.
func (e *Engine) Settle(pops []*Pop, delivered bool) {
	var back []*transitPop
	var buf [16]*transitPop
	done := buf[:0]
	for _, p := range pops {
		if delivered && !p.leased && len(p.Items) > 0 {
			e.countPopped(p.Key, len(p.Items))
		}
		if p.leased {
			continue
		}
		for _, tp := range p.parts {
			if len(tp.items) == 0 {
				continue // nothing in the record: settled when its reply was read
			}
			if delivered {
				done = append(done, tp)
			} else {
				back = append(back, tp)
			}
		}
	}
	if len(done) > 0 {
		e.transit.done(done)
	}
	if len(back) > 0 {
		e.transit.giveBack(back)
	}
}
