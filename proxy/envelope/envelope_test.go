package envelope

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestEnvelope_RoundTripsAnyBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		member  string
	}{
		{"json object", []byte(`{"receiver":"a@example.com","content":"hi"}`), `"json":`},
		{"json with inner spaces", []byte(`{"a": [1, 2]}`), `"json":`},
		{"json string", []byte(`"hello"`), `"json":`},
		{"json null", []byte(`null`), `"json":`},
		{"number", []byte(`42`), `"json":`},
		{"json with leading space", []byte(` {"a":1}`), `"text":`},
		{"plain text", []byte("send mail to bob"), `"text":`},
		{"html", []byte("<b>&</b>"), `"text":`},
		{"empty", []byte{}, `"text":`},
		{"invalid utf-8", []byte{0xff, 0xfe, 'a'}, `"b64":`},
		{"binary", []byte{0, 1, 2, 3, 0x80}, `"b64":`},
		{"json with invalid utf-8 inside", []byte("\"\xff\""), `"b64":`},
		{"large", bytes.Repeat([]byte("x"), 600*1024), `"text":`},
		{"looks like an envelope", []byte(`{"qgate":1,"id":"x"}`), `"json":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC)
			item := AppendEnvelope(nil, &Envelope{ID: "01JDX3B6T9Q4M2ZK8YJ3R5W7NC", Queue: "email_queue", EnqueuedAt: at, Producer: "default", Payload: tc.payload})
			if !bytes.Contains(item, []byte(tc.member)) {
				t.Fatalf("envelope %.200s does not use %s", item, tc.member)
			}
			e, ok := Decode(item)
			if !ok {
				t.Fatalf("Decode(%.200s) failed", item)
			}
			if got, want := e.Payload, tc.payload; !bytes.Equal(got, want) {
				t.Fatalf("payload = %.100q, want %.100q", got, want)
			}
			if got, want := e.Queue, "email_queue"; got != want {
				t.Fatalf("queue = %q, want %q", got, want)
			}
			if got, want := e.EnqueuedAt, at; !got.Equal(want) {
				t.Fatalf("enqueued_at = %v, want %v", got, want)
			}
			if got, want := Payload(string(item)), string(tc.payload); got != want {
				t.Fatalf("Payload() = %.100q, want %.100q", got, want)
			}
		})
	}
}

func TestEnvelope_Format(t *testing.T) {
	at := time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC)
	got := string(AppendEnvelope(nil, &Envelope{ID: "01JDX3B6T9Q4M2ZK8YJ3R5W7NC", Queue: "email_queue", EnqueuedAt: at, Producer: "default", Payload: []byte(`{"receiver":"a@example.com"}`)}))
	want := `{"qgate":1,"id":"01JDX3B6T9Q4M2ZK8YJ3R5W7NC","queue":"email_queue","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"default","json":{"receiver":"a@example.com"}}`
	if got != want {
		t.Fatalf("envelope\n got %s\nwant %s", got, want)
	}
}

func TestDecode_RejectsNonEnvelopes(t *testing.T) {
	for _, item := range []string{
		``,
		`hello`,
		`{"receiver":"a"}`,
		`{"qgate":1,"id":"x"}`, // missing members
		`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p"}`,                         // no payload
		`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","text":"a","b64":"YQ=="}`, // two payloads
		`{"qgate":1,"id":"x","queue":"q","enqueued_at":"yesterday","attempts":0,"producer":"p","text":"a"}`,
		`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","b64":"!!"}`,
		`{"qgate":2,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","text":"a"}`,
		`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","text":"a"} trailing`,
	} {
		if _, ok := Decode([]byte(item)); ok {
			t.Errorf("Decode(%q) accepted a non-envelope", item)
		}
		if got := Payload(item); got != item {
			t.Errorf("Payload(%q) = %q, want the item unchanged", item, got)
		}
	}
}

func TestNewID_SortsByTime(t *testing.T) {
	a := NewID()
	b := NewID()
	if len(a) != 26 || a >= b {
		t.Fatalf("ids %q, %q: want 26-character ULIDs in increasing order", a, b)
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a", `{"a":1}`, " 1", "\xff", `"\u2028"`, strings.Repeat("é", 10)} {
		f.Add([]byte(s), "q", "default")
	}
	f.Fuzz(func(t *testing.T, payload []byte, queue, producer string) {
		if !isValidUTF8(queue) || !isValidUTF8(producer) {
			t.Skip() // queue names and users are validated before they get here
		}
		item := Append(nil, queue, producer, payload)
		e, ok := Decode(item)
		if !ok {
			t.Fatalf("Decode(%q) failed", item)
		}
		if !bytes.Equal(e.Payload, payload) || e.Queue != queue || e.Producer != producer {
			t.Fatalf("round trip of %q gave %+v", payload, e)
		}
		if p, ok := fastPayload(string(item)); !ok || p != string(payload) {
			t.Fatalf("fast path on qgate's own envelope %q: %q ok=%v", item, p, ok)
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","text":"a"}`))
	f.Add([]byte(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":3,"producer":"p","json":[1,{"b":null}]}`))
	f.Add([]byte(`{"qgate":1,"id":"`))
	f.Add([]byte(`{"qgate":1,"id":"x","queue":"q","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"p","b64":"/w=="}`))
	f.Add([]byte(`{"qgate":1,"id":"x","queue":"q\"","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":10,"producer":"p","text":"a\u00e9\n"}`))
	f.Fuzz(func(t *testing.T, item []byte) {
		e, ok := Decode(item)
		// The fast path may only accept envelopes Decode accepts, with the same payload.
		if Is(item) {
			if p, fok := fastPayload(string(item)); fok && (!ok || p != string(e.Payload)) {
				t.Fatalf("fastPayload(%q) = %q, Decode = %q ok=%v", item, p, e.Payload, ok)
			}
		}
		if !ok {
			return
		}
		// Whatever decodes must re-encode to an envelope that decodes to the same thing.
		again, ok := Decode(AppendEnvelope(nil, &e))
		if !ok || !bytes.Equal(again.Payload, e.Payload) || again.ID != e.ID || again.Attempts != e.Attempts {
			t.Fatalf("re-encoding %q: got %+v ok=%v, want %+v", item, again, ok, e)
		}
	})
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "") == s }

// BenchmarkAppend and BenchmarkPayload measure the per-item cost of wrapping and unwrapping a 64-byte
// JSON task: go test -bench . ./proxy/envelope/
func BenchmarkAppend(b *testing.B) {
	task := []byte(`{"to":"user@example.com","body":"` + strings.Repeat("x", 34) + `"}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = Append(buf[:0], "email_queue", "default", task)
	}
}

func BenchmarkPayload(b *testing.B) {
	item := string(Append(nil, "email_queue", "default", []byte(`{"to":"user@example.com","body":"`+strings.Repeat("x", 34)+`"}`)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = Payload(item)
	}
}

// TestEnvelope_WithReceipt: the delivered copy carries the receipt as a last member, decodes to the
// same envelope (payload included) with Receipt set, and stays an envelope; items that are not
// well-formed envelopes are left as they are.
func TestEnvelope_WithReceipt(t *testing.T) {
	at := time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC)
	const receipt = "01JDX3B6T9Q4M2ZK8YJ3R5W7NCMFRGGZDF3XA2YKQ3T5W7NC4P.3"
	for _, payload := range [][]byte{[]byte(`{"a":1}`), []byte("text"), {0xff, 0}, {}} {
		stored := string(AppendEnvelope(nil, &Envelope{ID: "01JDX3B6T9Q4M2ZK8YJ3R5W7NC", Queue: "q", EnqueuedAt: at, Attempts: 2, Producer: "p", Payload: payload}))
		got := WithReceipt(stored, receipt)
		if want := stored[:len(stored)-1] + `,"receipt":"` + receipt + `"}`; got != want {
			t.Fatalf("WithReceipt = %s, want %s", got, want)
		}
		e, ok := Decode([]byte(got))
		if !ok {
			t.Fatalf("Decode(%s) failed", got)
		}
		if e.Receipt != receipt || e.Attempts != 2 || !bytes.Equal(e.Payload, payload) {
			t.Fatalf("decoded %+v, want receipt %s attempts 2 payload %q", e, receipt, payload)
		}
		if s, _ := Decode([]byte(stored)); s.Receipt != "" {
			t.Fatalf("stored envelope decodes with receipt %q", s.Receipt)
		}
		if string(AppendEnvelope(nil, &e)) != stored {
			t.Fatalf("AppendEnvelope of the delivered copy wrote the receipt: %s", AppendEnvelope(nil, &e))
		}
	}
	for _, raw := range []string{"raw", "", `{"qgate":1,"id":"x"}`, `{"qgate":1,"id":"x","queue":`} {
		if got := WithReceipt(raw, receipt); got != raw {
			t.Errorf("WithReceipt(%q) = %q, want it unchanged", raw, got)
		}
	}
}
