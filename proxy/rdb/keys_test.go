package rdb_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Tests of the key layout for queue names with and without a {hash tag} (proxy/DESIGN.md, "Key
// layout"): untagged names keep their keys byte for byte, every derived key shares the name's slot,
// and no two queues share a key.

// testInstance and testHash have the shapes of a real instance id (12 hex digits) and dedup hash (32).
const (
	testInstance = "0123456789ab"
	testHash     = "0123456789abcdef0123456789abcdef"
)

// derivedKeys returns every key rdb builds for queue other than its ready list, by kind.
func derivedKeys(queue string) map[string]string {
	return map[string]string{
		"inflight":       rdb.InflightKey(queue),
		"leases":         rdb.LeasesKey(queue),
		"delayed":        rdb.DelayedKey(queue),
		"handoff":        rdb.HandoffKey(queue),
		"dead":           rdb.DeadKey(queue),
		"transit":        rdb.TransitKey(queue, testInstance),
		"transit-owners": rdb.TransitOwnersKey(queue),
		"dedup":          rdb.DedupKey(queue, testHash),
		"paused":         rdb.PausedKey(queue),
		"waiters":        rdb.WaitersKey(queue),
		"turn":           rdb.TurnKey(queue),
	}
}

// TestKey_UntaggedNamesUnchanged pins the key names qgate always used for names without a hash tag:
// data left in Redis by earlier versions must keep working.
func TestKey_UntaggedNamesUnchanged(t *testing.T) {
	for _, q := range []string{"q", "email_queue", "a.b-c_d:e", "a{b", "{"} {
		want := map[string]string{
			"inflight":       "{" + q + "}:qgate:inflight",
			"leases":         "{" + q + "}:qgate:leases",
			"delayed":        "{" + q + "}:qgate:delayed",
			"handoff":        "{" + q + "}:qgate:handoff",
			"dead":           "{" + q + "}:qgate:dead",
			"transit":        "{" + q + "}:qgate:transit:" + testInstance,
			"transit-owners": "{" + q + "}:qgate:transit-owners",
			"dedup":          "{" + q + "}:qgate:dedup:" + testHash,
			"paused":         "{" + q + "}:qgate:paused",
			"waiters":        "{" + q + "}:qgate:waiters",
			"turn":           "{" + q + "}:qgate:turn",
		}
		for kind, got := range derivedKeys(q) {
			if got != want[kind] {
				t.Errorf("queue %q %s: got %q, want %q", q, kind, got, want[kind])
			}
		}
	}
	if got, want := rdb.InflightKey("email"), "{email}:qgate:inflight"; got != want {
		t.Errorf("InflightKey(email) = %q, want %q", got, want)
	}
}

// TestKey_TaggedLayout pins the layout of a tagged name's keys: its tag, then its whole name.
func TestKey_TaggedLayout(t *testing.T) {
	for _, tc := range []struct{ queue, kind, got, want string }{
		{"jobs{t}", "inflight", rdb.InflightKey("jobs{t}"), "{t}:qgate:inflight:jobs{t}"},
		{"jobs{t}", "transit", rdb.TransitKey("jobs{t}", "ab12"), "{t}:qgate:transit:jobs{t}:ab12"},
		{"{app}:email", "dead", rdb.DeadKey("{app}:email"), "{app}:qgate:dead:{app}:email"},
		{"bull:{q}:wait", "dedup", rdb.DedupKey("bull:{q}:wait", "ff"), "{q}:qgate:dedup:bull:{q}:wait:ff"},
		{"x{{t}", "leases", rdb.LeasesKey("x{{t}"), "{{t}:qgate:leases:x{{t}"},
	} {
		if tc.got != tc.want {
			t.Errorf("queue %q %s: got %q, want %q", tc.queue, tc.kind, tc.got, tc.want)
		}
	}
}

func TestHashTag_FollowsSlot(t *testing.T) {
	for _, tc := range []struct {
		key, tag string
		ok       bool
	}{
		{"jobs{t}", "t", true}, {"{app}:email", "app", true}, {"foo{}{bar}", "", false},
		{"foo{{bar}}zap", "{bar", true}, {"foo{bar}{zap}", "bar", true}, {"a{b", "", false},
		{"}{a}", "a", true}, {"a}b", "", false}, {"plain", "", false},
	} {
		if tag, ok := rdb.HashTag(tc.key); tag != tc.tag || ok != tc.ok {
			t.Errorf("HashTag(%q) = %q, %v, want %q, %v", tc.key, tag, ok, tc.tag, tc.ok)
		}
	}
	for _, v := range slotVectors {
		tag, ok := rdb.HashTag(v.key)
		if !ok {
			tag = v.key
		}
		if got := refSlot(tag); got != v.slot {
			t.Errorf("HashTag(%q) = %q: its slot is %d, the key's %d", v.key, tag, got, v.slot)
		}
	}
}

// genName returns a random candidate name over an alphabet rich in braces and in the characters of
// the key layout (':', "qgate").
func genName(rng *rand.Rand) string {
	parts := []string{"{", "}", ":", "t", "a", "{t}", "qgate", ":qgate:", "inflight", "dead", "transit", testInstance, "x"}
	var b strings.Builder
	for n := 1 + rng.IntN(6); n > 0; n-- {
		b.WriteString(parts[rng.IntN(len(parts))])
	}
	return b.String()
}

// adversarial are names built to collide with one another's keys if the layout allowed it.
var adversarial = []string{
	"t", "{t}", "a{t}", "b{t}", "{t}a", "{t}:email", "{t}:qgate", "{t}:qgatex", "a{t}:inflight",
	"a{t}:transit", "a{t}:" + testInstance, "a{b", "{", "x{{t}", "{t", "{{t}", "inflight", "t:qgate:inflight",
	"x{t}:qgate:inflight", "{t}x:qgate:dead", "{t}:qgate:inflight:a{t}", "{t}:qgate:dead",
}

func validName(name string) bool { return policy.ValidateName("queue", name, false) == nil }

// TestKey_TaggedKeysShareSlot: for every valid name, every derived key is in the name's slot.
func TestKey_TaggedKeysShareSlot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := append([]string(nil), adversarial...)
	for range 20000 {
		names = append(names, genName(rng))
	}
	checked := 0
	for _, q := range names {
		if !validName(q) {
			continue
		}
		checked++
		want := rdb.Slot(q)
		for kind, k := range derivedKeys(q) {
			if got := rdb.Slot(k); got != want {
				t.Fatalf("queue %q: %s key %q is in slot %d, the queue in %d", q, kind, k, got, want)
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d valid names generated", checked)
	}
}

// TestKey_NoCollision: among many valid names, no key (ready list or derived) belongs to two queues
// or to two kinds of one queue.
func TestKey_NoCollision(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	names := append([]string(nil), adversarial...)
	for range 20000 {
		names = append(names, genName(rng))
	}
	owner := map[string]string{} // key -> "queue kind"
	seen := map[string]bool{}
	for _, q := range names {
		if !validName(q) || seen[q] {
			continue
		}
		seen[q] = true
		keys := derivedKeys(q)
		keys["ready"] = q
		for kind, k := range keys {
			if prev, ok := owner[k]; ok {
				t.Fatalf("key %q is %s and %q %s", k, prev, q, kind)
			}
			owner[k] = q + " " + kind
		}
	}
	for _, q := range []string{"{t}:qgate:inflight", "{t}:qgate:transit-owners", "{x}:qgate:dead:a{x}"} {
		if validName(q) {
			t.Errorf("%q has the shape of a qgate key and must be refused", q)
		}
	}
	for _, k := range []string{rdb.LeasedQueuesKey, rdb.InstancesKey, rdb.QueuesKey} {
		if _, ok := owner[k]; ok {
			t.Errorf("global key %q collides with %s", k, owner[k])
		}
	}
}

// FuzzKey_SameSlotNoCollision: for any two valid names, each one's keys share its slot, and none of
// a's keys (ready list included) is one of b's.
func FuzzKey_SameSlotNoCollision(f *testing.F) {
	for i, a := range adversarial {
		f.Add(a, adversarial[(i+1)%len(adversarial)])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !validName(a) {
			return
		}
		ka := derivedKeys(a)
		for kind, k := range ka {
			if rdb.Slot(k) != rdb.Slot(a) {
				t.Fatalf("queue %q: %s key %q is in slot %d, the queue in %d", a, kind, k, rdb.Slot(k), rdb.Slot(a))
			}
			if k == a {
				t.Fatalf("queue %q: %s key is its ready list", a, kind)
			}
		}
		if !validName(b) || a == b {
			return
		}
		kb := derivedKeys(b)
		ka["ready"], kb["ready"] = a, b
		for kindA, x := range ka {
			for kindB, y := range kb {
				if x == y {
					t.Fatalf("%q %s and %q %s are both %q", a, kindA, b, kindB, x)
				}
			}
		}
	})
}
