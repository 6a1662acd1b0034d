package commands

import (
	"math/big"
	"time"
)

// ParseTimeout parses a BLPOP/BRPOP timeout in seconds exactly as Redis 7.0 does, and returns it as a
// duration (0 = forever) or an error text.
//
// Redis 7.0 reads the argument with strtold into an x87 long double (64-bit significand), multiplies
// it by 1000 in long double, takes ceill and casts the result to a long long. So, like Redis:
//   - hexadecimal floats are numbers ("0x1" is one second, "0x1p-2" a quarter), "inf" and "infinity"
//     too; NaN, leading space, trailing bytes and an empty argument are "not a float";
//   - a value that overflows or underflows the long double (beyond about 1.19e4932, below about
//     1.8e-4951 but not 0) is "not a float", while "1e400" is a number;
//   - a positive value below 1 ms waits 1 ms ("1e-400" too); a negative one above -1 ms rounds to -0
//     and waits forever, like 0;
//   - infinite values and those of 2^63 ms or more are cast to LLONG_MIN: "timeout is negative";
//   - the whole argument must be the number, so a NUL byte makes it "not a float".
//
// Waits longer than a century are forever (Redis's deadline there overflows to one that never comes).
func ParseTimeout(arg []byte) (time.Duration, string) {
	ms, errText := timeoutMillis(arg)
	if errText != "" {
		return 0, errText
	}
	if ms > int64(100*365*24*time.Hour/time.Millisecond) {
		return 0, ""
	}
	return time.Duration(ms) * time.Millisecond, ""
}

// blockTimeout is ParseTimeout with the session's last fractional timeout remembered: a worker sends
// the same "BLPOP q 0.1" in a loop, and an exact long double parse costs a few µs (whole seconds are
// cheap and not remembered).
func (s *Session) blockTimeout(arg []byte) (time.Duration, string) {
	if s.timeoutArg != nil && string(arg) == string(s.timeoutArg) {
		return s.timeout, ""
	}
	d, errText := ParseTimeout(arg)
	if errText == "" && len(arg) <= maxRememberedTimeout {
		if _, whole := smallUint(arg); !whole {
			s.timeoutArg, s.timeout = append(s.timeoutArg[:0], arg...), d
		}
	}
	return d, errText
}

// maxRememberedTimeout bounds the timeout argument a session remembers (its memory per connection).
const maxRememberedTimeout = 32

// maxLongDoubleChars is Redis's MAX_LONG_DOUBLE_CHARS: longer arguments are not parsed.
const maxLongDoubleChars = 5 * 1024

// Limits of the x87 80-bit long double: values round to infinity from 2^16384 (LDBL_MAX is just
// below) and to 0 at or below half the smallest subnormal, 2^-16446; below 2^-16382 they are subnormal.
const (
	ldMaxExp       = 16384
	ldMinNormalExp = -16382
	ldZeroExp      = -16446
	ldPrec         = 64
)

// timeoutMillis returns the timeout in milliseconds (0 = forever) as Redis 7.0 computes it.
func timeoutMillis(arg []byte) (int64, string) {
	if len(arg) == 0 || len(arg) >= maxLongDoubleChars || isCSpace(arg[0]) {
		return 0, ErrTimeout
	}
	s := arg
	if n, ok := smallUint(s); ok { // the common case: whole seconds
		return n * 1000, ""
	}
	num, ok := parseCFloat(s)
	switch {
	case !ok || num.nan:
		return 0, ErrTimeout
	case num.inf:
		return 0, ErrTimeoutNeg
	case num.mant.Sign() == 0:
		return 0, ""
	}
	// Rule out what over- or underflows the long double before building an exact rational, whose
	// size follows the exponent (bits ~ log2 of the value).
	var lo, hi int64 // the value lies in [2^lo, 2^hi)
	if num.hex {
		hi = int64(num.mant.BitLen()) + num.exp
		lo = hi - 1
	} else {
		// value in [10^(digits-1+exp), 10^(digits+exp)); 3.321 < log2(10) < 3.322, and integer
		// division truncates toward zero.
		digits := int64(len(num.mant.String()))
		if d := digits - 1 + num.exp; d >= 0 {
			lo = d * 3321 / 1000
		} else {
			lo = d*3322/1000 - 1
		}
		if d := digits + num.exp; d >= 0 {
			hi = d*3322/1000 + 1
		} else {
			hi = d*3321/1000 + 1
		}
	}
	switch {
	case lo > ldMaxExp:
		return 0, ErrTimeout // overflow: strtold gives HUGE_VALL with ERANGE
	case hi < ldZeroExp:
		return 0, ErrTimeout // underflow to 0 with ERANGE
	case hi < ldMinNormalExp:
		// Subnormal or zero: far below a millisecond either way.
		if exact(num).Cmp(pow2Rat(ldZeroExp)) <= 0 {
			return 0, ErrTimeout
		}
		if num.neg {
			return 0, "" // ceill(-tiny) is -0: forever
		}
		return 1, ""
	}
	r := exact(num)
	x := new(big.Float).SetPrec(ldPrec).SetMode(big.ToNearestEven).SetRat(r)
	if x.MantExp(nil) > ldMaxExp {
		return 0, ErrTimeout // rounds to infinity
	}
	if num.neg {
		x.Neg(x)
	}
	y := new(big.Float).SetPrec(ldPrec).SetMode(big.ToNearestEven).Mul(x, big.NewFloat(1000))
	c, acc := y.Int(nil) // truncated toward zero
	if acc == big.Below {
		c.Add(c, big.NewInt(1)) // y was positive with a fraction: ceil
	}
	if c.Sign() < 0 || !c.IsInt64() {
		return 0, ErrTimeoutNeg // negative, or cast from 2^63 or more to LLONG_MIN
	}
	return c.Int64(), ""
}

// cNumber is a number as strtold reads it: value = mant * 10^exp (or 2^exp when hex).
type cNumber struct {
	neg, hex, inf, nan bool
	mant               *big.Int
	exp                int64
}

// parseCFloat parses all of s with strtold's grammar (C locale): an optional sign, then "inf",
// "infinity", "nan" (with an optional "(chars)"), a hexadecimal float "0x…[p±d]" or a decimal float.
// It reports false unless the whole of s is one number.
func parseCFloat(s []byte) (cNumber, bool) {
	var n cNumber
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		n.neg = s[i] == '-'
		i++
	}
	rest := s[i:]
	switch {
	case equalFold(rest, "inf") || equalFold(rest, "infinity"):
		n.inf = true
		return n, true
	case len(rest) >= 3 && equalFold(rest[:3], "nan"):
		n.nan = true
		return n, validNaNTail(rest[3:])
	case len(rest) >= 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'X'):
		n.hex = true
		return n, n.parseMantissa(rest[2:], 16, 'p', 4)
	}
	return n, n.parseMantissa(rest, 10, 'e', 1)
}

// validNaNTail reports whether t is nothing or "(" [A-Za-z0-9_]* ")".
func validNaNTail(t []byte) bool {
	if len(t) == 0 {
		return true
	}
	if len(t) < 2 || t[0] != '(' || t[len(t)-1] != ')' {
		return false
	}
	for _, b := range t[1 : len(t)-1] {
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_') {
			return false
		}
	}
	return true
}

// parseMantissa parses digits [ "." digits ] (at least one digit) in base, then an optional exponent
// marker expChar, sign and decimal digits, scaled by expScale (4 for hex: each fraction digit is 4 bits).
func (n *cNumber) parseMantissa(s []byte, base int, expChar byte, expScale int64) bool {
	n.mant = new(big.Int)
	var digits []byte
	var frac int64
	seen, dot := false, false
	i := 0
	for ; i < len(s); i++ {
		b := s[i]
		if b == '.' && !dot {
			dot = true
			continue
		}
		if digitVal(b) >= base {
			break
		}
		seen = true
		if dot {
			frac++
		}
		digits = append(digits, b)
	}
	if !seen {
		return false
	}
	if _, ok := n.mant.SetString(string(digits), base); !ok {
		return false
	}
	if i < len(s) {
		if s[i]|0x20 != expChar {
			return false
		}
		e, ok := parseExponent(s[i+1:])
		if !ok {
			return false
		}
		n.exp = e
	}
	n.exp -= frac * expScale
	return true
}

// parseExponent parses [sign] digits, all of t, saturating far beyond any long double exponent.
func parseExponent(t []byte) (int64, bool) {
	neg := false
	if len(t) > 0 && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if len(t) == 0 {
		return 0, false
	}
	var e int64
	for _, b := range t {
		if b < '0' || b > '9' {
			return 0, false
		}
		if e < 1<<40 {
			e = e*10 + int64(b-'0')
		}
	}
	if neg {
		e = -e
	}
	return e, true
}

func digitVal(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	case b >= 'A' && b <= 'F':
		return int(b-'A') + 10
	}
	return 99
}

// exact returns |n| as a rational (n is finite and in the range checked by timeoutMillis).
func exact(n cNumber) *big.Rat {
	r := new(big.Rat).SetInt(n.mant)
	if n.hex {
		return r.Mul(r, pow2Rat(n.exp))
	}
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(abs64(n.exp)), nil)
	if n.exp >= 0 {
		return r.Mul(r, new(big.Rat).SetInt(p))
	}
	return r.Quo(r, new(big.Rat).SetInt(p))
}

// pow2Rat returns 2^e.
func pow2Rat(e int64) *big.Rat {
	p := new(big.Int).Lsh(big.NewInt(1), uint(abs64(e)))
	if e >= 0 {
		return new(big.Rat).SetInt(p)
	}
	return new(big.Rat).SetFrac(big.NewInt(1), p)
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// smallUint parses up to 9 decimal digits (no sign, no dot): exact in any float format.
func smallUint(s []byte) (int64, bool) {
	if len(s) > 9 {
		return 0, false
	}
	var n int64
	for _, b := range s {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

// isCSpace is C's isspace in the C locale.
func isCSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}
