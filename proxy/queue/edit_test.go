package queue

import (
	"errors"
	"reflect"
	"testing"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// A batch of list edits is one round trip, each operation seeing the ones before it, and an
// element argument matches enveloped items by payload.
func TestListEdit_EngineBatch(t *testing.T) {
	e := newTestEngine(t, nil, 0)
	e.push(t, "q", "a", "b", "a")
	ins, err := e.Insert("q", true, []byte("b"), "tester", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	px, err := e.PushX("q", false, "tester", [][]byte{[]byte("z")})
	if err != nil {
		t.Fatal(err)
	}
	pos := e.Pos("q", []byte("a"), 1, 0, 0)
	rem := e.Rem("q", -1, []byte("a"))
	idx := e.Index("q", []byte("1"))
	e.Run([]Queued{ins, px, pos, rem, idx})
	if n, err := ins.Result(); err != nil || n != 4 {
		t.Fatalf("insert: %d, %v; want 4", n, err)
	}
	if n, err := px.Result(); err != nil || n != 5 {
		t.Fatalf("pushx: %d, %v; want 5", n, err)
	}
	if got, err := pos.Result(); err != nil || !reflect.DeepEqual(got, []int64{0, 3}) {
		t.Fatalf("pos: %v, %v; want [0 3]", got, err)
	}
	if n, err := rem.Result(); err != nil || n != 1 {
		t.Fatalf("rem: %d, %v; want 1", n, err)
	}
	v, err := idx.Result()
	if err != nil || v == nil {
		t.Fatalf("index: %v, %v", v, err)
	}
	if got := envelope.Payload(*v); got != "new" {
		t.Fatalf("index 1 holds %q, want the inserted item", got)
	}
}

// LSET and LINSERT values are refused like pushes' (and nothing is sent).
func TestListEdit_EngineValuesRefused(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "j*", Format: "json"}}, 0)
	e.push(t, "jq", `{"a":1}`)
	var rej *RejectedError
	if _, err := e.Set("jq", []byte("0"), "tester", []byte("nope")); !errors.As(err, &rej) {
		t.Fatalf("Set: %v, want a *RejectedError", err)
	}
	if _, err := e.Insert("jq", false, []byte(`{"a":1}`), "tester", []byte("nope")); !errors.As(err, &rej) {
		t.Fatalf("Insert: %v, want a *RejectedError", err)
	}
	small := newTestEngine(t, nil, 100)
	var big *TooLargeError
	if _, err := small.PushX("q", true, "tester", [][]byte{[]byte("x")}); !errors.As(err, &big) {
		t.Fatalf("PushX: %v, want a *TooLargeError", err)
	}
}

func TestListEdit_SlotGroups(t *testing.T) {
	keys := []string{"a", "b", "a", "{a}x", "c"}
	if got := slotGroups(keys, false); !reflect.DeepEqual(got, [][]string{keys}) {
		t.Fatalf("standalone: %v, want one group", got)
	}
	got := slotGroups(keys, true)
	n := 0
	for _, g := range got {
		for _, k := range g {
			if rdb.Slot(k) != rdb.Slot(g[0]) {
				t.Fatalf("group %v mixes slots", g)
			}
			n++
		}
	}
	if n != len(keys) || !reflect.DeepEqual(got[0], []string{"a", "a", "{a}x"}) {
		t.Fatalf("cluster groups %v", got)
	}
}
