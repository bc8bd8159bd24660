package h1

// The token and field validators of RFC 9110 §5, written once for the
// whole request path: the request-head parser, the response parser and the
// outbound request all use these. They accept exactly what
// golang.org/x/net/http/httpguts accepts (which net/http uses internally);
// FuzzFieldValidators holds them to http.Transport's checks.

// text is a string or a byte slice: the parsers check bytes in place, the
// outbound side checks header map strings.
type text interface{ ~string | ~[]byte }

// tchar reports whether c may appear in a token (RFC 9110 §5.6.2):
// "!#$%&'*+-.^_`|~", digits and letters.
func tchar(c byte) bool {
	const mask = 0 |
		(1<<10-1)<<'0' |
		(1<<26-1)<<'a' |
		(1<<26-1)<<'A' |
		1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' | 1<<'\'' | 1<<'*' |
		1<<'+' | 1<<'-' | 1<<'.' | 1<<'^' | 1<<'_' | 1<<'`' | 1<<'|' | 1<<'~'
	// Shifts of 64 or more give 0 in Go, so bytes >= 128 are refused.
	return (uint64(1)<<c)&(mask&(1<<64-1)) != 0 ||
		(uint64(1)<<(c-64))&(mask>>64) != 0
}

// ValidFieldName reports whether s is a token: a valid field name.
func ValidFieldName[T text](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := range len(s) {
		if !tchar(s[i]) {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether s holds no control character other than
// horizontal tab (bytes 0x80-0xFF, obs-text, are allowed).
func ValidFieldValue[T text](s T) bool {
	for i := range len(s) {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// equalFold reports whether a and b are equal, ignoring ASCII case only.
func equalFold[T text](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(b) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// trimOWS trims optional white space (SP, HTAB) from both ends of s.
func trimOWS[T text](s T) T {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// listContains reports whether the comma-separated list v holds token
// (ASCII case-insensitively, each element trimmed of OWS).
func listContains[T text](v T, token string) bool {
	for len(v) > 0 {
		var elem T
		elem, v = cutComma(v)
		if equalFold(trimOWS(elem), token) {
			return true
		}
	}
	return false
}

// valuesContain reports whether any of the comma-separated lists in vals
// holds token, as httpguts.HeaderValuesContainsToken does.
func valuesContain(vals []string, token string) bool {
	for _, v := range vals {
		if listContains(v, token) {
			return true
		}
	}
	return false
}

func cutComma[T text](v T) (elem, rest T) {
	for i := range len(v) {
		if v[i] == ',' {
			return v[:i], v[i+1:]
		}
	}
	return v, v[len(v):]
}
