// Package glob matches strings against Redis glob patterns (the rules of KEYS, PSUBSCRIBE and ACL
// key patterns): * any run, ? one byte, [abc] [^abc] [a-z] classes and \ escapes.
package glob

// Match reports whether s matches pattern exactly as Redis 7.0's stringmatchlen does
// (case-sensitive), in O(len(pattern) × len(s)) time at worst.
//
// Redis's quirks are kept: the empty string matches only the empty pattern (so "*" does not match
// ""); a range's bounds may come in either order ([z-a] is [a-z]); a range swallows a ']' as its
// upper bound ([a-]x] is one class); an unterminated class runs to the end of the pattern ("[abc"
// matches "a", "[" matches nothing, "[^" matches any one byte); a trailing backslash is a literal
// backslash; range bounds compare as signed bytes, as in Redis built for x86-64 ([a-\xff] is
// [\xff-a]: \xff and \x00 to 'a', not 'b'). A pattern with * nested more than 1,000 deep (more
// than 1,000 runs of * followed by something) matches nothing, as in Redis releases with the
// CVE-2024-31228 fix (7.2.6 and later, and distributions' patched 7.0 such as Debian's).
func Match(pattern, s string) bool {
	ok, _ := match(pattern, s)
	return ok
}

// maxNesting is the depth of * at which Redis stops recursing and reports no match.
const maxNesting = 1000

// match is Match, also returning the number of pattern bytes it examined (counting a look at the
// end of the pattern as one) so that tests can check the bound.
//
// Every token other than * consumes exactly one byte of s, so a * never needs more than one
// backtrack point: on a mismatch, the most recent * takes one more byte and the rest of the pattern
// is retried from there. Backtracking to an earlier * could not help: whatever an earlier * would
// absorb in addition, the most recent one can absorb instead (the tokens between them are
// fixed-width and have already matched). Each retry scans at most the pattern once and starts one
// byte further into s, which gives the bound. Redis reaches the same answers by recursion.
func match(p, s string) (ok bool, steps int) {
	if len(s) == 0 { // stringmatchlen's loop never runs for an empty string
		return len(p) == 0, 0
	}
	pi, si := 0, 0
	starP, starS := -1, 0 // the pattern index after the last *, and the position in s it resumes at
	nesting := 0          // the runs of * met so far, each a level of recursion in Redis
	for si < len(s) {
		if pi < len(p) && p[pi] == '*' {
			steps++
			for pi+1 < len(p) && p[pi+1] == '*' {
				pi++
				steps++
			}
			if pi == len(p)-1 {
				return true, steps
			}
			// The scan meets each run of * once, and every match passes through all of them, so
			// Redis's limit refuses exactly when this count passes it.
			if nesting++; nesting > maxNesting {
				return false, steps
			}
			pi++
			starP, starS = pi, si
			continue
		}
		if pi < len(p) {
			next, ok, n := token(p, pi, s[si])
			steps += n
			if ok {
				pi, si = next, si+1
				continue
			}
		}
		if starP < 0 {
			return false, steps
		}
		if pi == len(p) {
			steps++ // the end of the pattern was examined
		}
		starS++
		pi, si = starP, starS
	}
	// s is used up. Redis strips the *s that follow and then needs the end of the pattern. When a *
	// has just taken the last byte (si reached len(s) by backtracking) pi is at the token after that *,
	// which is not a *, so the answer is no, as in Redis (its * loop never offers the empty rest).
	for pi < len(p) && p[pi] == '*' {
		pi++
		steps++
	}
	return pi == len(p), steps
}

// token matches the non-* token at p[i] against c, returning the index after the token and the
// number of pattern bytes it looked at. It follows stringmatchlen byte for byte, reading a NUL where
// C reads the terminator past the end of the pattern.
func token(p string, i int, c byte) (next int, ok bool, steps int) {
	switch p[i] {
	case '?':
		return i + 1, true, 1
	case '\\':
		if i+1 < len(p) {
			return i + 2, p[i+1] == c, 2
		}
		return i + 1, c == '\\', 1
	case '[':
		start := i
		i++
		not := i < len(p) && p[i] == '^'
		if not {
			i++
		}
		matched := false
	class:
		for {
			switch {
			case i < len(p) && p[i] == '\\' && len(p)-i >= 2:
				i++
				if p[i] == c {
					matched = true
				}
			case i < len(p) && p[i] == ']':
				break class
			case i >= len(p): // unterminated: the class ends with the pattern
				return len(p), matched != not, len(p) - start
			case len(p)-i >= 3 && p[i+1] == '-':
				// C's char is signed on x86-64, where Redis compares the bytes of a range as -128..127.
				lo, hi, x := int8(p[i]), int8(p[i+2]), int8(c)
				if lo > hi {
					lo, hi = hi, lo
				}
				if x >= lo && x <= hi {
					matched = true
				}
				i += 2
			default:
				if p[i] == c {
					matched = true
				}
			}
			i++
		}
		return i + 1, matched != not, i + 1 - start
	default:
		return i + 1, p[i] == c, 1
	}
}

// LiteralPrefix splits pattern at its first *, ? or [ that is not escaped: prefix is what comes
// before, with escapes resolved (\x is x, and a trailing \ is itself), and rest is the remainder as
// written. Every string the pattern matches begins with prefix; when rest is empty the pattern
// matches prefix and nothing else.
func LiteralPrefix(pattern string) (prefix, rest string) {
	b := make([]byte, 0, len(pattern))
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*', '?', '[':
			return string(b), pattern[i:]
		case '\\':
			if i+1 < len(pattern) {
				i++
			}
			b = append(b, pattern[i])
		default:
			b = append(b, c)
		}
	}
	return string(b), ""
}
