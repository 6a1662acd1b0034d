package queue

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestReceipts_SortInPopOrder: receipts of one process sort in the order their items were leased:
// by pop, then by position in the pop (numerically: item 10 after item 9).
func TestReceipts_SortInPopOrder(t *testing.T) {
	var want []string
	for pop := 0; pop < 3; pop++ {
		p := newReceiptPrefix()
		for i := 1; i <= 12; i++ {
			want = append(want, p+"."+strconv.Itoa(i))
		}
	}
	got := append([]string(nil), want...)
	for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
		got[i], got[j] = got[j], got[i]
	}
	sortReceipts(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sorted\n%q\nwant\n%q", got, want)
	}
}

// TestReceipts_Prefix: every pop's receipt prefix is new, and holds nothing that JSON would escape
// (it goes into delivered envelopes verbatim) and no "." (which separates the item's position).
func TestReceipts_Prefix(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		p := newReceiptPrefix()
		if seen[p] {
			t.Fatalf("prefix %s twice", p)
		}
		seen[p] = true
		if strings.ContainsFunc(p, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') }) {
			t.Fatalf("prefix %q has characters other than A-Z and 0-9", p)
		}
		if len(p) < 26+26 {
			t.Fatalf("prefix %q: want a ULID and at least 128 random bits", p)
		}
	}
}
