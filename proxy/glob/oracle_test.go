package glob

// redisMatch is the reference for the tests: stringmatchlen_impl of Redis 7.0.15 with
// the nesting limit of the CVE-2024-31228 fix, as the redis-server the tests start has it;
// case-sensitive, transcribed line by line. Pointer arithmetic becomes an index, a read past the end
// of the pattern returns the NUL terminator C finds there, and range bounds are signed as C's char is
// on x86-64. It recurses on every *; skipLongerMatches (Redis's fix for CVE-2022-36021) keeps it
// polynomial, but the tests still feed it only small inputs.
func redisMatch(pattern, s string) bool {
	skip := false
	return redisMatchImpl(pattern, 0, s, 0, &skip, 0)
}

func redisMatchImpl(pat string, p int, str string, s int, skipLongerMatches *bool, nesting int) bool {
	if nesting > 1000 {
		return false
	}
	at := func(i int) byte { // pattern[i] in C: the terminator past the end
		if i < len(pat) {
			return pat[i]
		}
		return 0
	}
	patternLen, stringLen := len(pat)-p, len(str)-s
	for patternLen > 0 && stringLen > 0 {
		switch at(p) {
		case '*':
			for patternLen > 0 && at(p+1) == '*' {
				p++
				patternLen--
			}
			if patternLen == 1 {
				return true
			}
			for stringLen > 0 {
				if redisMatchImpl(pat, p+1, str, s, skipLongerMatches, nesting+1) {
					return true
				}
				if *skipLongerMatches {
					return false
				}
				s++
				stringLen--
			}
			*skipLongerMatches = true
			return false
		case '?':
			s++
			stringLen--
		case '[':
			p++
			patternLen--
			not := at(p) == '^'
			if not {
				p++
				patternLen--
			}
			match := false
			for {
				if at(p) == '\\' && patternLen >= 2 {
					p++
					patternLen--
					if at(p) == str[s] {
						match = true
					}
				} else if at(p) == ']' {
					break
				} else if patternLen == 0 {
					p--
					patternLen++
					break
				} else if patternLen >= 3 && at(p+1) == '-' {
					start, end, c := int(int8(at(p))), int(int8(at(p+2))), int(int8(str[s]))
					if start > end {
						start, end = end, start
					}
					p += 2
					patternLen -= 2
					if c >= start && c <= end {
						match = true
					}
				} else if at(p) == str[s] {
					match = true
				}
				p++
				patternLen--
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s++
			stringLen--
		case '\\':
			if patternLen >= 2 {
				p++
				patternLen--
			}
			fallthrough
		default:
			if at(p) != str[s] {
				return false
			}
			s++
			stringLen--
		}
		p++
		patternLen--
		if stringLen == 0 {
			for at(p) == '*' {
				p++
				patternLen--
			}
			break
		}
	}
	return patternLen == 0 && stringLen == 0
}
