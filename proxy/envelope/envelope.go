// Package envelope encodes and decodes the JSON envelope qgate stores around each queued item.
//
// An envelope is one JSON object whose first member is "qgate":1, for example
//
//	{"qgate":1,"id":"01JDX3B6T9Q4M2ZK8YJ3R5W7NC","queue":"email_queue","enqueued_at":"2026-11-23T20:55:01.123Z","attempts":0,"producer":"default","json":{"receiver":"a@example.com"}}
//
// The payload is stored in exactly one of three members, chosen so that any byte string round-trips
// exactly: "json" holds it verbatim when it is valid UTF-8 JSON without surrounding whitespace, "text"
// holds other valid UTF-8 as a JSON string, and "b64" holds anything else in standard base64.
//
// # The layout the Lua scripts depend on
//
// The scripts in proxy/rdb/scripts treat items as opaque bytes (lease_pop, ack, the transit scripts
// and the others never look inside one: leases are keyed by receipts, and equal items are leased
// alike), except retry.lua and redrive.lua, which read and rewrite the attempts counter. Both match
// an item against this Lua pattern (as written in their source, a single-quoted Lua string where \\
// is one backslash), anchored at the item's first byte:
//
//	^{"qgate":1,"id":"[^"\\]+","queue":"[^"\\]*","enqueued_at":"[^"\\]*","attempts":(%d+),
//
// ([^"\\] is any byte but '"' and '\'; %d+ is decimal digits). Where it matches they splice a new
// number in place of the captured digits and keep every other byte: retry.lua (run by nack.lua and
// requeue_expired.lua) writes attempts + 1, redrive.lua writes 0. An item that does not match is
// handled as a raw item: retried straight to the ready list, never counted, never dead-lettered. A
// dead item is kept as the "item" member, a JSON string, of a cjson-encoded record with members
// "reason", "failed_at", "attempts" and "item" (in no fixed order); redrive.lua decodes the record
// and applies the pattern to that string.
//
// So AppendEnvelope must begin every envelope with exactly these bytes, in this order:
//
//  1. prefix, {"qgate":1,"id":" (Is checks it too), then the id unescaped (a ULID: never '"' or '\');
//  2. ","queue": and the queue name as a JSON string holding no '"' and no '\' (policy.ValidateName
//     allows neither, so appendString writes it as it is);
//  3. ,"enqueued_at":" then the time in TimeFormat (UTC, no escapes) and ";
//  4. ,"attempts": then the count in plain decimal digits (no sign, exponent or leading zero; the
//     scripts write Lua's tostring of the new count, digits below 1e14) and the ',' that starts the
//     next member.
//
// No whitespace, no other member in between. What follows (,"producer": and one payload member, and
// a delivered copy's last member "receipt") is never read by the scripts; fastPayload expects it
// exactly as AppendEnvelope writes it. layout_test.go in this package reads the pattern out of both
// scripts and checks AppendEnvelope's output against it; proxy/rdb/scripts_test.go and
// proxy/rdb/envelope_contract_test.go run the scripts on envelopes built here and decode what they
// write.
//
// A stored envelope never carries a lease receipt: WithReceipt adds one to the copy delivered to the
// client that leased it.
package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// prefix starts every envelope; an item without it is never an envelope.
const prefix = `{"qgate":1,"id":"`

// TimeFormat is the layout of enqueued_at (RFC 3339, UTC, milliseconds).
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Envelope is a decoded envelope.
type Envelope struct {
	ID         string    // ULID: unique and sortable by creation time
	Queue      string    // the queue or channel it was pushed to
	EnqueuedAt time.Time // when qgate accepted it
	Attempts   int       // deliveries so far (at-least-once queues count redeliveries)
	Producer   string    // the authenticated user that pushed it, or "default"
	Payload    []byte    // exactly the bytes the producer pushed
	// Receipt is the lease receipt of a delivered copy from an at-least-once queue (see WithReceipt);
	// "" in stored envelopes. AppendEnvelope never writes it.
	Receipt string
}

// NewID returns a new envelope id (a ULID, monotonic within this process).
func NewID() string { return ulid.Make().String() }

// Append encodes an envelope for payload to dst with a new id and the current time (one clock read
// for both: the id's milliseconds are enqueued_at's). It is AppendEnvelope without the id's string.
func Append(dst []byte, queue, producer string, payload []byte) []byte {
	now := time.Now()
	var id [ulid.EncodedSize]byte
	_ = ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).MarshalTextTo(id[:]) // cannot fail: the size is right
	return appendEnvelope(dst, id[:], &Envelope{Queue: queue, EnqueuedAt: now, Producer: producer, Payload: payload})
}

// AppendEnvelope encodes e to dst. dst grows once, to the size of the envelope (a JSON-escaped
// payload may need more), so a large payload is not copied again and again as dst fills.
func AppendEnvelope(dst []byte, e *Envelope) []byte { return appendEnvelope(dst, e.ID, e) }

// appendEnvelope is AppendEnvelope with the id given apart (e.ID is not read).
func appendEnvelope[S string | []byte](dst []byte, id S, e *Envelope) []byte {
	p := e.Payload
	const (
		asJSON = iota
		asText
		asB64
	)
	kind, size := asB64, base64.StdEncoding.EncodedLen(len(p))+2
	switch {
	case embeddable(p):
		kind, size = asJSON, len(p)
	case utf8.Valid(p):
		kind, size = asText, len(p)+2
	}
	need := len(prefix) + len(id) + len(e.Queue) + len(e.Producer) + len(TimeFormat) + 96 + size
	if cap(dst)-len(dst) < need {
		dst = append(make([]byte, 0, len(dst)+need), dst...)
	}
	dst = append(dst, prefix...)
	dst = append(dst, id...)
	dst = append(dst, `","queue":`...)
	dst = appendString(dst, e.Queue)
	dst = append(dst, `,"enqueued_at":"`...)
	dst = appendTime(dst, e.EnqueuedAt)
	dst = append(dst, `","attempts":`...)
	dst = strconv.AppendInt(dst, int64(e.Attempts), 10)
	dst = append(dst, `,"producer":`...)
	dst = appendString(dst, e.Producer)
	switch kind {
	case asJSON:
		dst = append(dst, `,"json":`...)
		dst = append(dst, p...)
	case asText:
		dst = append(dst, `,"text":`...)
		dst = appendString(dst, p)
	default:
		dst = append(dst, `,"b64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// WithReceipt returns the copy of a stored envelope that is delivered to the client that leased it:
// the envelope with a last member "receipt" holding the lease receipt, which QACK, QNACK and QEXTEND
// take. receipt must need no JSON escaping (receipts are base32, digits and '.'). An item that is not
// a well-formed envelope is returned as it is. The stored envelope is never changed: the receipt is
// only in what its receiver gets.
func WithReceipt(item, receipt string) string {
	if !Is([]byte(item)) || item[len(item)-1] != '}' {
		return item
	}
	if _, ok := fastPayload(item); !ok {
		if _, ok := Decode([]byte(item)); !ok {
			return item
		}
	}
	return item[:len(item)-1] + `,"receipt":"` + receipt + `"}`
}

// appendTime appends t in TimeFormat, in UTC: what t.UTC().AppendFormat(dst, TimeFormat) writes,
// without interpreting the layout for each envelope.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, TimeFormat)
	}
	h, mi, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// embeddable reports whether p can be stored verbatim as a JSON value: decoding returns exactly p.
func embeddable(p []byte) bool {
	if len(p) == 0 || isSpace(p[0]) || isSpace(p[len(p)-1]) || !utf8.Valid(p) {
		return false
	}
	return validJSON(p)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// appendString appends s (valid UTF-8) as a JSON string.
func appendString[S string | []byte](dst []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b, _ := json.Marshal(string(s)) // rare: escapes or non-ASCII; valid UTF-8, so this cannot fail
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// wire is the JSON shape of an envelope.
type wire struct {
	Qgate      int             `json:"qgate"`
	ID         string          `json:"id"`
	Queue      *string         `json:"queue"`
	EnqueuedAt string          `json:"enqueued_at"`
	Attempts   *int            `json:"attempts"`
	Producer   *string         `json:"producer"`
	JSON       json.RawMessage `json:"json"`
	Text       *string         `json:"text"`
	B64        *string         `json:"b64"`
	Receipt    string          `json:"receipt"`
}

// Is reports whether item looks like an envelope (a cheap prefix check; Decode confirms).
func Is(item []byte) bool { return bytes.HasPrefix(item, []byte(prefix)) }

// Decode parses an envelope. ok is false when item is not a well-formed envelope: such items (pushed
// straight into Redis by other programs) are delivered as they are.
func Decode(item []byte) (e Envelope, ok bool) {
	if !Is(item) {
		return e, false
	}
	var w wire
	if err := json.Unmarshal(item, &w); err != nil {
		return e, false
	}
	if w.Qgate != 1 || w.ID == "" || w.Queue == nil || w.Attempts == nil || w.Producer == nil {
		return e, false
	}
	t, err := time.Parse(time.RFC3339Nano, w.EnqueuedAt)
	if err != nil {
		return e, false
	}
	n := 0
	switch {
	case w.JSON != nil:
		n++
		e.Payload = []byte(w.JSON)
	}
	if w.Text != nil {
		n++
		e.Payload = []byte(*w.Text)
	}
	if w.B64 != nil {
		n++
		p, err := base64.StdEncoding.DecodeString(*w.B64)
		if err != nil {
			return Envelope{}, false
		}
		e.Payload = p
	}
	if n != 1 {
		return Envelope{}, false
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	e.ID, e.Queue, e.EnqueuedAt, e.Attempts, e.Producer = w.ID, *w.Queue, t, *w.Attempts, *w.Producer
	e.Receipt = w.Receipt
	return e, true
}

// Payload returns what a consumer asking for payloads receives for a stored item: the payload of an
// envelope, or the item itself when it is not one.
func Payload(item string) string {
	if !Is([]byte(item)) {
		return item
	}
	if p, ok := fastPayload(item); ok {
		return p
	}
	e, ok := Decode([]byte(item))
	if !ok {
		return item
	}
	return string(e.Payload)
}

// fastPayload extracts the payload of an envelope laid out exactly as AppendEnvelope writes it,
// without reflection; ok is false for anything else (Decode then decides). It accepts only items that
// Decode accepts, with the same payload (FuzzDecode checks this).
func fastPayload(item string) (string, bool) {
	p := item[len(prefix):]
	i := strings.IndexByte(p, '"')
	if i <= 0 || strings.IndexByte(p[:i], '\\') >= 0 {
		return "", false
	}
	p = p[i+1:]
	var ok bool
	var ts string
	if p, ok = member(p, `,"queue":`); !ok {
		return "", false
	}
	if _, p, ok = jsonString(p); !ok {
		return "", false
	}
	if p, ok = member(p, `,"enqueued_at":`); !ok {
		return "", false
	}
	if ts, p, ok = jsonString(p); !ok || strings.IndexByte(ts, '\\') >= 0 {
		return "", false
	}
	if _, err := time.Parse(time.RFC3339Nano, ts[1:len(ts)-1]); err != nil {
		return "", false
	}
	if p, ok = member(p, `,"attempts":`); !ok {
		return "", false
	}
	n := 0
	for n < len(p) && n < 10 && p[n] >= '0' && p[n] <= '9' {
		n++
	}
	if n == 0 || n == 10 || (n > 1 && p[0] == '0') {
		return "", false
	}
	p = p[n:]
	if p, ok = member(p, `,"producer":`); !ok {
		return "", false
	}
	if _, p, ok = jsonString(p); !ok {
		return "", false
	}
	if len(p) < 2 || p[len(p)-1] != '}' {
		return "", false
	}
	switch {
	case strings.HasPrefix(p, `,"json":`):
		v := p[len(`,"json":`) : len(p)-1]
		if !embeddable([]byte(v)) {
			return "", false
		}
		return v, true
	case strings.HasPrefix(p, `,"text":`):
		v := p[len(`,"text":`) : len(p)-1]
		str, rest, ok := jsonString(v)
		if !ok || rest != "" {
			return "", false
		}
		if strings.IndexByte(str, '\\') < 0 {
			return str[1 : len(str)-1], true
		}
		var out string
		if json.Unmarshal([]byte(str), &out) != nil {
			return "", false
		}
		return out, true
	case strings.HasPrefix(p, `,"b64":"`):
		v := p[len(`,"b64":"`) : len(p)-1]
		if len(v) == 0 || v[len(v)-1] != '"' {
			return "", false
		}
		b, err := base64.StdEncoding.DecodeString(v[:len(v)-1])
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return "", false
}

func member(p, name string) (string, bool) {
	if !strings.HasPrefix(p, name) {
		return "", false
	}
	return p[len(name):], true
}

// jsonString splits a JSON string literal (quotes included) off the front of p. It accepts only
// strings that are valid JSON (no raw control characters, valid escapes, valid UTF-8).
func jsonString(p string) (str, rest string, ok bool) {
	if len(p) < 2 || p[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			str = p[:i+1]
			if !utf8.ValidString(str) {
				return "", "", false
			}
			if strings.IndexByte(str, '\\') >= 0 && !json.Valid([]byte(str)) {
				return "", "", false
			}
			return str, p[i+1:], true
		case c == '\\':
			i++
		case c < 0x20:
			return "", "", false
		}
	}
	return "", "", false
}
