package envelope

// maxDepth is encoding/json's nesting limit: json.Valid refuses a value nested deeper.
const maxDepth = 10000

// validJSON reports exactly what json.Valid reports: whether p is one JSON value, optionally
// surrounded by whitespace (strings are not checked for UTF-8, as there; nesting up to maxDepth). It
// walks p once without encoding/json's per-byte state functions: envelopes check every JSON payload
// with it. FuzzValidJSON compares the two.
func validJSON(p []byte) bool {
	var buf [32]byte
	open := buf[:0] // '{' or '[' of each container not yet closed
	i := skipSpace(p, 0)
	for {
		// A value starts at p[i].
		if i >= len(p) {
			return false
		}
		opened := false
		switch c := p[i]; {
		case c == '{' || c == '[':
			if len(open) == maxDepth {
				return false
			}
			open = append(open, c)
			i = skipSpace(p, i+1)
			if i < len(p) && p[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				open = open[:len(open)-1]
				i++
				break
			}
			opened = true
		case c == '"':
			i = skipString(p, i)
		case c == '-' || c >= '0' && c <= '9':
			i = skipNumber(p, i)
		case c == 't':
			i = skipLiteral(p, i, "true")
		case c == 'f':
			i = skipLiteral(p, i, "false")
		case c == 'n':
			i = skipLiteral(p, i, "null")
		default:
			return false
		}
		if i < 0 {
			return false
		}
		if opened {
			// Inside a container that was just opened and holds something: an object's first key.
			if open[len(open)-1] == '{' {
				if i = skipKey(p, i); i < 0 {
					return false
				}
			}
			continue
		}
		// After a value: close containers, or go on to the next element.
		next := false
		for !next {
			i = skipSpace(p, i)
			if len(open) == 0 {
				return i == len(p)
			}
			if i >= len(p) {
				return false
			}
			top := open[len(open)-1]
			switch p[i] {
			case ',':
				i = skipSpace(p, i+1)
				if top == '{' {
					if i = skipKey(p, i); i < 0 {
						return false
					}
				}
				next = true
			case top + 2:
				open = open[:len(open)-1]
				i++
			default:
				return false
			}
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// skipKey skips an object member's key and its colon from p[i], and the whitespace after: it returns
// where the member's value starts, or -1.
func skipKey(p []byte, i int) int {
	if i >= len(p) || p[i] != '"' {
		return -1
	}
	if i = skipString(p, i); i < 0 {
		return -1
	}
	i = skipSpace(p, i)
	if i >= len(p) || p[i] != ':' {
		return -1
	}
	return skipSpace(p, i+1)
}

// skipString returns the index after the JSON string that starts at p[i] (a '"'), or -1.
func skipString(p []byte, i int) int {
	for i++; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i >= len(p) {
				return -1
			}
			switch p[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) || !isHex(p[i+3]) || !isHex(p[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		case c < 0x20:
			return -1
		}
	}
	return -1
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipNumber returns the index after the JSON number that starts at p[i], or -1.
func skipNumber(p []byte, i int) int {
	if p[i] == '-' {
		i++
	}
	switch {
	case i >= len(p):
		return -1
	case p[i] == '0':
		i++
	case p[i] >= '1' && p[i] <= '9':
		for i++; i < len(p) && isDigit(p[i]); i++ {
		}
	default:
		return -1
	}
	if i < len(p) && p[i] == '.' {
		i++
		if i >= len(p) || !isDigit(p[i]) {
			return -1
		}
		for i++; i < len(p) && isDigit(p[i]); i++ {
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if i >= len(p) || !isDigit(p[i]) {
			return -1
		}
		for i++; i < len(p) && isDigit(p[i]); i++ {
		}
	}
	return i
}

// skipLiteral returns the index after lit at p[i], or -1.
func skipLiteral(p []byte, i int, lit string) int {
	if len(p)-i < len(lit) || string(p[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
