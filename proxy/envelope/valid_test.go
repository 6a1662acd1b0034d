package envelope

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var validJSONCases = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1E-7`, `1e5x`, `-12.30e+010`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `"`, `""`, `"a\"b"`, `"\u00e9"`, `"\u00g9"`, `"\u12"`,
	`"\x"`, "\"\x01\"", "\"\xff\"", `"\/\b\f\n\r\t\\"`, `{}`, `{ }`, `[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`,
	`{"a":1}`, `{"a":1,}`, `{"a" : [1, {"b": null}] }`, `{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`,
	`[}`, `{]`, `[[[]]]`, `[[[]]`, ` {"to":"user@example.com"} `, "\t[\r\n1\n]\t", `1 2`, `"a" "b"`,
	`[1,2,3,[4,{"x":[]}]]`, `{"a":{"b":{"c":{}}}}`, `{"a":1}}`, `[1]]`, "\v1", `nulll`, `[true,false,null]`,
	strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
	strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
	strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
}

// TestValidJSON_AsJSONValid: validJSON answers as json.Valid, depth limit included.
func TestValidJSON_AsJSONValid(t *testing.T) {
	for _, c := range validJSONCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.60q) = %v, want %v (json.Valid)", c, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		if len(c) < 200 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := validJSON(p), json.Valid(p); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", p, got, want)
		}
	})
}

// TestAppendTime_AsAppendFormat: appendTime writes what AppendFormat(TimeFormat) writes in UTC, for
// times in any zone, on both sides of the years it formats itself.
func TestAppendTime_AsAppendFormat(t *testing.T) {
	zone := time.FixedZone("x", -(5*3600 + 30*60))
	times := []time.Time{
		time.Now(), time.Unix(0, 0), time.Unix(1, 999999999), time.Date(2026, 2, 28, 23, 59, 59, 999500000, zone),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(-1, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 1e6, time.UTC),
		time.Date(2024, 2, 29, 12, 1, 2, 3e6, time.UTC), time.Date(1999, 12, 31, 19, 0, 0, 0, zone),
	}
	for i := int64(0); i < 2000; i++ {
		times = append(times, time.Unix(i*7919*3600+i*1237, i*99991*1000).In(zone))
	}
	for _, at := range times {
		if got, want := string(appendTime([]byte("x"), at)), "x"+at.UTC().Format(TimeFormat); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", at, got, want)
		}
	}
}
