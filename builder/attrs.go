package builder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Structured attributes reach the builder as two files, .attrs.json and
// .attrs.sh, which Nix writes with nlohmann::json. Builders may hash or copy
// them, so they are written here byte for byte as Nix 2.8 writes them:
// nlohmann's compact dump (keys sorted, only `"`, `\` and control characters
// escaped, floats in its shortest form) and Nix's bash declarations.

// decodeAttrs parses structured attributes keeping numbers as written.
func decodeAttrs(js string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var attrs map[string]any
	if err := dec.Decode(&attrs); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the object")
	}
	return attrs, nil
}

// dumpJSON writes v as nlohmann::json's dump() does.
func dumpJSON(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		b.WriteString(formatNumber(v))
	case string:
		dumpString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpJSON(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpString(b, k)
			b.WriteByte(':')
			dumpJSON(b, v[k])
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("dumpJSON: unexpected %T", v))
	}
}

func dumpString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// isFloat reports whether nlohmann would parse n as a floating-point
// number: it has a fraction or exponent, or is an integer too large for
// 64 bits.
func isFloat(n json.Number) bool {
	s := string(n)
	if strings.ContainsAny(s, ".eE") {
		return true
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err != nil
}

// formatNumber renders a number as nlohmann dumps it: integers in decimal,
// floats in the shortest form that reads back the same, with ".0" added to
// integral values and an exponent (at least two digits) outside
// 1e-5 < |x| < 1e15.
func formatNumber(n json.Number) string {
	if !isFloat(n) {
		if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
		u, _ := strconv.ParseUint(string(n), 10, 64)
		return strconv.FormatUint(u, 10)
	}
	f, _ := strconv.ParseFloat(string(n), 64)
	return formatFloat(f)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "null"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// Shortest digits d1d2…dk and exponent e with f = 0.d1…dk × 10^n.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(expS)
	k := len(digits)
	n := x + 1
	const minExp, maxExp = -4, 15
	switch {
	case k <= n && n <= maxExp:
		return sign + digits + strings.Repeat("0", n-k) + ".0"
	case 0 < n && n <= maxExp:
		return sign + digits[:n] + "." + digits[n:]
	case minExp < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits
	}
	m := digits[:1]
	if k > 1 {
		m += "." + digits[1:]
	}
	es := "+"
	if n-1 < 0 {
		es = "-"
	}
	ev := n - 1
	if ev < 0 {
		ev = -ev
	}
	return fmt.Sprintf("%s%se%s%02d", sign, m, es, ev)
}

var shVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func shellEscape(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellSimple renders a scalar as Nix's writeStructuredAttrsShell does, or
// reports that it is not one it renders.
func shellSimple(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return shellEscape(v), true
	case json.Number:
		// Nix converts to a 32-bit float, keeps it if integral, and prints
		// it as a C int.
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return "", false
		}
		f32 := float64(float32(f))
		if math.Ceil(f32) != f32 {
			return "", false
		}
		if isFloat(v) {
			// A double converted to int (cvttsd2si): out of range gives
			// INT_MIN.
			if math.IsNaN(f) || f >= math.MaxInt32+1 || f < math.MinInt32 {
				return strconv.Itoa(math.MinInt32), true
			}
			return strconv.Itoa(int(int32(f))), true
		}
		// A 64-bit integer converted to int: truncated.
		i, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			u, _ := strconv.ParseUint(string(v), 10, 64)
			i = int64(u)
		}
		return strconv.Itoa(int(int32(i))), true
	case nil:
		return "''", true
	case bool:
		if v {
			return "1", true
		}
		return "", true
	}
	return "", false
}

// attrsShell renders the attributes as bash declarations (Nix's
// writeStructuredAttrsShell): scalars, arrays and associative arrays of
// scalars, for keys that are shell variable names.
func attrsShell(attrs map[string]any) []byte {
	var b bytes.Buffer
	for _, key := range slices.Sorted(maps.Keys(attrs)) {
		if !shVarName.MatchString(key) {
			continue
		}
		value := attrs[key]
		if s, ok := shellSimple(value); ok {
			fmt.Fprintf(&b, "declare %s=%s\n", key, s)
			continue
		}
		switch value := value.(type) {
		case []any:
			var s2 strings.Builder
			good := true
			for _, v2 := range value {
				s3, ok := shellSimple(v2)
				if !ok {
					good = false
					break
				}
				s2.WriteString(s3 + " ")
			}
			if good {
				fmt.Fprintf(&b, "declare -a %s=(%s)\n", key, s2.String())
			}
		case map[string]any:
			var s2 strings.Builder
			good := true
			for _, k2 := range slices.Sorted(maps.Keys(value)) {
				s3, ok := shellSimple(value[k2])
				if !ok {
					good = false
					break
				}
				fmt.Fprintf(&s2, "[%s]=%s ", shellEscape(k2), s3)
			}
			if good {
				fmt.Fprintf(&b, "declare -A %s=(%s)\n", key, s2.String())
			}
		}
	}
	return b.Bytes()
}
