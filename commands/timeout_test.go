package commands

import (
	"strings"
	"testing"
	"time"
)

// TestParseTimeout_Redis70 checks values whose Redis 7.0.15 replies were recorded (the end-to-end test
// TestRaw_BlockTimeoutParsing compares them with a live redis-server).
func TestParseTimeout_Redis70(t *testing.T) {
	tests := []struct {
		arg  string
		want time.Duration
		err  string
	}{
		{"0", 0, ""},
		{"5", 5 * time.Second, ""},
		{"00001", time.Second, ""},
		{"0x1", time.Second, ""},
		{"0x1p-2", 250 * time.Millisecond, ""},
		{"0x.8", 500 * time.Millisecond, ""},
		{"inf", 0, ErrTimeoutNeg},
		{"-Infinity", 0, ErrTimeoutNeg},
		{"1e400", 0, ErrTimeoutNeg},
		{"-1e400", 0, ErrTimeoutNeg},
		{"9223372036854775.808", 0, ErrTimeoutNeg},
		{"9223372036854775.807", 0, ""}, // a deadline that never comes: forever
		{"1e-400", time.Millisecond, ""},
		{"0.0001", time.Millisecond, ""},
		{"0.001", time.Millisecond, ""},
		{"1.5e-3", 2 * time.Millisecond, ""},
		{"1.9e-4951", time.Millisecond, ""},
		{"1.8e-4951", 0, ErrTimeout},
		{"1.18973149535723176502e4932", 0, ErrTimeoutNeg},
		{"1.1897314953572317651e4932", 0, ErrTimeout},
		{"0x1p16383", 0, ErrTimeoutNeg},
		{"0x1p16384", 0, ErrTimeout},
		{"1e99999999999999999999", 0, ErrTimeout},
		{"1e-99999999999999999999", 0, ErrTimeout},
		{"0e99999999999", 0, ""},
		{"-0", 0, ""},
		{"-0.0001", 0, ""},
		{"-0x1p-20", 0, ""},
		{"-1", 0, ErrTimeoutNeg},
		{"+.5e-0", 500 * time.Millisecond, ""},
		{"5.", 5 * time.Second, ""},
		{"1e3", 1000 * time.Second, ""},
		{"0.5" + strings.Repeat("0", 5116), 500 * time.Millisecond, ""},
		{"0.5" + strings.Repeat("0", 5117), 0, ErrTimeout},
		{"", 0, ErrTimeout},
		{" 1", 0, ErrTimeout},
		{"1 ", 0, ErrTimeout},
		{"1\x00", 0, ErrTimeout},
		{"nan", 0, ErrTimeout},
		{"nan(x)", 0, ErrTimeout},
		{"0x", 0, ErrTimeout},
		{"0x1p", 0, ErrTimeout},
		{"1e+", 0, ErrTimeout},
		{"1_0", 0, ErrTimeout},
		{".", 0, ErrTimeout},
		{"1.2.3", 0, ErrTimeout},
		{"infin", 0, ErrTimeout},
	}
	for _, tt := range tests {
		got, err := ParseTimeout([]byte(tt.arg))
		if got != tt.want || err != tt.err {
			arg := tt.arg
			if len(arg) > 40 {
				arg = arg[:40] + "…"
			}
			t.Errorf("ParseTimeout(%q) = %v, %q; want %v, %q", arg, got, err, tt.want, tt.err)
		}
	}
}

// TestSession_BlockTimeoutRemembersTheLastFraction: a session's repeated fractional timeout gives what
// ParseTimeout gives, a new one replaces it, and errors are never remembered.
func TestSession_BlockTimeoutRemembersTheLastFraction(t *testing.T) {
	var s Session
	for _, arg := range []string{"0.1", "0.1", "0.25", "0.1", "x", "0.1", "1", "0.1", "0.1x", "1e-400", "1e-400"} {
		want, wantErr := ParseTimeout([]byte(arg))
		got, gotErr := s.blockTimeout([]byte(arg))
		if got != want || gotErr != wantErr {
			t.Fatalf("blockTimeout(%q) = %v, %q; want %v, %q", arg, got, gotErr, want, wantErr)
		}
	}
	if got, want := string(s.timeoutArg), "1e-400"; got != want {
		t.Fatalf("remembered %q, want %q (the last fractional timeout)", got, want)
	}
	s.blockTimeout([]byte("0.5"))
	if got, _ := s.blockTimeout([]byte("0.1")); got != 100*time.Millisecond {
		t.Fatalf("after another fraction, 0.1 = %v, want 100ms", got)
	}
}
