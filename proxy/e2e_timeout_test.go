package proxy_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRaw_BlockTimeoutParsing sends BLPOP with each timeout argument to qgate and to redis-server 7.0
// and compares the reply bytes. Redis 7.0 reads the timeout with strtold into a long double, so hex
// floats, "inf", long-double range limits, rounding up to the millisecond and casts of huge values to a
// negative integer all have to come out the same. wait is how long the timeout lasts (0: the reply is
// immediate, forever: the client stays blocked until an item comes).
func TestRaw_BlockTimeoutParsing(t *testing.T) {
	const forever = time.Duration(-1)
	tests := []struct {
		arg  string
		wait time.Duration
	}{
		{"0x1", time.Second},               // strtold reads hex
		{"0X1", time.Second},               //
		{"0x1p-2", 250 * time.Millisecond}, // hex float with a binary exponent
		{"0x.8", 500 * time.Millisecond},   //
		{"inf", 0},                         // timeout is negative: the cast of inf to long long
		{"-inf", 0},                        //
		{"Infinity", 0},                    //
		{"1e400", 0},                       // a long double holds it; the cast does not
		{"-1e400", 0},                      //
		{"1e300", 0},                       //
		{"9.3e15", 0},                      // 9.3e18 ms: past 2^63
		{"9223372036854775.808", 0},        // 2^63 ms exactly
		{"9223372036854775.807", forever},  // just below: a deadline too far to come
		{"1e3", forever},                   // 1000 s: longer than this test looks
		{"1e-400", time.Millisecond},       // positive and below 1 ms: 1 ms
		{"4.9e-324", time.Millisecond},     //
		{"0.0001", time.Millisecond},       //
		{"1.9e-4951", time.Millisecond},    // a long double subnormal
		{"1.8e-4951", 0},                   // rounds to 0: strtold's ERANGE, not a float
		{"1e-5000", 0},                     //
		{"1.18973149535723176502e4932", 0}, // LDBL_MAX: a number, cast to a negative integer
		{"1.1897314953572317651e4932", 0},  // rounds to infinity: ERANGE, not a float
		{"0x1p16384", 0},                   //
		{"nan", 0},                         // not a float
		{"-nan", 0},                        //
		{"nan(1)", 0},                      //
		{" 1", 0},                          // leading space
		{"\t1", 0},                         //
		{"1 ", 0},                          // trailing bytes
		{"1\x00", 0},                       //
		{"\x00", 0},                        //
		{"", 0},                            //
		{"+", 0},                           //
		{"0x", 0},                          //
		{"1e", 0},                          //
		{"1_0", 0},                         //
		{"infin", 0},                       //
		{"+1", time.Second},                //
		{".5", 500 * time.Millisecond},     //
		{"5.", 5 * time.Second},            //
		{"+.5e-0", 500 * time.Millisecond}, //
		{"0.5" + strings.Repeat("0", 5116), 500 * time.Millisecond}, // 5119 bytes: parsed
		{"0.5" + strings.Repeat("0", 5117), 0},                      // 5120 bytes: too long for Redis's buffer
		{"-0", forever},                                             // 0: forever
		{"-0.0001", forever},                                        // ceill(-0.1) is -0: forever
		{"-0x1p-20", forever},
		{"0e99999999999", forever},
		{"-1", 0},
	}
	// The longest finite wait above; a client still blocked well after it stays blocked for good.
	const longest = 5 * time.Second
	const bound = 2 * time.Second // generous: Redis checks timeouts at its hz (every 100 ms)

	e := newRawEnv(t, nil)
	if e.direct == nil {
		t.Skip(e.noRedis)
	}
	tgs := []target{e.qgate(t), {name: "redis", addr: e.direct.Addr, data: e.direct.Client(t), redis: true}}

	results := make([][2]rawBlpopResult, len(tests))
	var wg sync.WaitGroup
	for i, tt := range tests {
		for j, tg := range tgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := "timeout:" + strconv.Itoa(i)
				results[i][j] = blpopRaw(t, tg, key, tt.arg, longest+bound)
			}()
		}
	}
	wg.Wait()
	for i, tt := range tests {
		q, r := results[i][0], results[i][1]
		arg := clipQ(tt.arg)
		if q.reply != r.reply || q.blocked != r.blocked {
			t.Errorf("BLPOP k %q:\n qgate: %q blocked=%v\n redis: %q blocked=%v", arg, q.reply, q.blocked, r.reply, r.blocked)
			continue
		}
		for j, res := range []rawBlpopResult{q, r} {
			switch who := tgs[j].name; {
			case tt.wait == forever:
				if !res.blocked {
					t.Errorf("%s: BLPOP k %q replied %q after %v, want it blocked", who, arg, res.reply, res.elapsed)
				}
			case res.blocked:
				t.Errorf("%s: BLPOP k %q still blocked after %v, want a reply after %v", who, arg, longest+bound, tt.wait)
			case tt.wait == 0 && !strings.HasPrefix(res.reply, "-"):
				t.Errorf("%s: BLPOP k %q = %q, want an error", who, arg, res.reply)
			case tt.wait > 0 && (res.reply != "*-1\r\n" || res.elapsed < tt.wait || res.elapsed > tt.wait+bound):
				t.Errorf("%s: BLPOP k %q = %q after %v, want *-1 after %v (within %v)", who, arg, res.reply, res.elapsed, tt.wait, bound)
			}
		}
	}
}

type rawBlpopResult struct {
	reply   string
	elapsed time.Duration
	blocked bool // no reply until an item was pushed
}

// blpopRaw sends BLPOP key arg to tg and reads the reply. A client still blocked after window gets an
// item pushed to key, and its reply (the item) is returned with blocked set.
func blpopRaw(t *testing.T, tg target, key, arg string, window time.Duration) (res rawBlpopResult) {
	c, err := net.DialTimeout("tcp", tg.addr, rawTimeout)
	if err != nil {
		t.Errorf("%s: dial: %v", tg.name, err)
		return
	}
	defer c.Close()
	cmd := "*3\r\n$5\r\nBLPOP\r\n" + bulk(key) + bulk(arg)
	start := time.Now()
	if _, err := io.WriteString(c, cmd); err != nil {
		t.Errorf("%s: send: %v", tg.name, err)
		return
	}
	buf := make([]byte, 512)
	_ = c.SetReadDeadline(start.Add(window))
	n, err := c.Read(buf)
	res.elapsed = time.Since(start)
	if err == nil {
		res.reply = string(buf[:n])
		return
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("%s: BLPOP %s %q: %v", tg.name, key, clipQ(arg), err)
		return
	}
	res.blocked = true
	if err := tg.data.RPush(context.Background(), key, "item").Err(); err != nil {
		t.Errorf("%s: RPUSH %s: %v", tg.name, key, err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(rawTimeout))
	n, err = c.Read(buf)
	if err != nil {
		t.Errorf("%s: BLPOP %s %q after an item came: %v", tg.name, key, clipQ(arg), err)
	}
	res.reply = string(buf[:n])
	return
}
