package derivation

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

const atermPrefix = "Derive("

// Write writes d's ATerm form, as Nix writes .drv files.
func (d *Derivation) Write(w io.Writer) error {
	_, err := w.Write(d.Bytes())
	return err
}

// Bytes returns d's ATerm form.
func (d *Derivation) Bytes() []byte {
	return d.unparse(false, nil)
}

// unparse renders the ATerm. With mask, output paths and the environment
// variables named after outputs are blanked (the form hashed for an
// input-addressed derivation's own outputs). A non-nil inputs replaces
// the input derivations (hashDerivationModulo puts input hashes there).
func (d *Derivation) unparse(mask bool, inputs map[string][]string) []byte {
	var b bytes.Buffer
	b.Grow(1024)
	b.WriteString(atermPrefix)
	b.WriteByte('[')
	for i, name := range d.OutputNames() {
		o := d.Outputs[name]
		if i > 0 {
			b.WriteByte(',')
		}
		path := o.Path
		if mask {
			path = ""
		}
		b.WriteByte('(')
		raw(&b, name)
		b.WriteByte(',')
		raw(&b, path)
		b.WriteByte(',')
		raw(&b, o.HashAlgo)
		b.WriteByte(',')
		raw(&b, o.Hash)
		b.WriteByte(')')
	}
	b.WriteString("],[")
	if inputs == nil {
		inputs = d.InputDerivations
	}
	for i, p := range slices.Sorted(maps.Keys(inputs)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		raw(&b, p)
		b.WriteByte(',')
		list(&b, inputs[p], raw)
		b.WriteByte(')')
	}
	b.WriteString("],")
	list(&b, d.InputSources, raw)
	b.WriteByte(',')
	raw(&b, d.System)
	b.WriteByte(',')
	escaped(&b, d.Builder)
	b.WriteByte(',')
	list(&b, d.Args, escaped)
	b.WriteString(",[")
	for i, k := range slices.Sorted(maps.Keys(d.Env)) {
		if i > 0 {
			b.WriteByte(',')
		}
		v := d.Env[k]
		if _, isOutput := d.Outputs[k]; mask && isOutput {
			v = ""
		}
		b.WriteByte('(')
		escaped(&b, k)
		b.WriteByte(',')
		escaped(&b, v)
		b.WriteByte(')')
	}
	b.WriteString("])")
	return b.Bytes()
}

// raw writes s quoted but unescaped, as Nix's printUnquotedString does.
func raw(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

// escaped writes s quoted, escaping what Nix's printString escapes.
func escaped(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

func list(b *bytes.Buffer, ss []string, item func(*bytes.Buffer, string)) {
	b.WriteByte('[')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		item(b, s)
	}
	b.WriteByte(']')
}

// Parse parses a .drv file's ATerm and validates the result. The name is
// taken from the environment (see NameFromEnv); callers that know the
// .drv path set Name from it instead, as Nix does. Parse accepts only the
// canonical form Write produces (see the package documentation).
func Parse(data []byte) (*Derivation, error) {
	d, err := parseATerm(data)
	if err != nil {
		return nil, err
	}
	d.Name = NameFromEnv(d.Env)
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// ParseNamed parses like Parse but names the derivation name, the name of
// its .drv path without ".drv".
func ParseNamed(data []byte, name string) (*Derivation, error) {
	d, err := parseATerm(data)
	if err != nil {
		return nil, err
	}
	d.Name = name
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

type parser struct {
	data []byte
	pos  int
}

// parseError reports the position and what was expected.
func (p *parser) errorf(format string, args ...any) error {
	ctx := p.data[p.pos:]
	if len(ctx) > 24 {
		ctx = ctx[:24]
	}
	return fmt.Errorf("%w: at byte %d (%q): %s", ErrInvalid, p.pos, ctx, fmt.Sprintf(format, args...))
}

func (p *parser) expect(s string) error {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(s)) {
		return p.errorf("expected %q", s)
	}
	p.pos += len(s)
	return nil
}

// peek reports whether the next byte is c.
func (p *parser) peek(c byte) bool { return p.pos < len(p.data) && p.data[p.pos] == c }

// rawString reads a quoted string written by raw: no `"` or `\` inside.
func (p *parser) rawString() (string, error) {
	if err := p.expect(`"`); err != nil {
		return "", err
	}
	start := p.pos
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '"':
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		case '\\':
			return "", p.errorf("backslash in a field Nix writes unescaped")
		}
		p.pos++
	}
	return "", p.errorf("unterminated string")
}

// escapedString reads a quoted string written by escaped.
func (p *parser) escapedString() (string, error) {
	if err := p.expect(`"`); err != nil {
		return "", err
	}
	var sb strings.Builder
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch c {
		case '"':
			sb.Write(p.data[start:p.pos])
			p.pos++
			return sb.String(), nil
		case '\n', '\r', '\t':
			return "", p.errorf("raw control character %q in a string (Nix writes it escaped)", c)
		case '\\':
			sb.Write(p.data[start:p.pos])
			if p.pos+1 >= len(p.data) {
				p.pos++
				return "", p.errorf("unterminated string")
			}
			switch e := p.data[p.pos+1]; e {
			case '"', '\\':
				sb.WriteByte(e)
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			default:
				return "", p.errorf("escape \\%c (Nix writes only \\\" \\\\ \\n \\r \\t)", e)
			}
			p.pos += 2
			start = p.pos
			continue
		}
		p.pos++
	}
	return "", p.errorf("unterminated string")
}

// list reads [item,item,...].
func (p *parser) list(item func() error) error {
	if err := p.expect("["); err != nil {
		return err
	}
	if p.peek(']') {
		p.pos++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.peek(']') {
			p.pos++
			return nil
		}
		if err := p.expect(","); err != nil {
			return p.errorf(`expected "," or "]"`)
		}
	}
}

// stringList reads a list of strings, which must be sorted and unique if
// sorted is set.
func (p *parser) stringList(read func() (string, error), sorted bool, what string) ([]string, error) {
	out := []string{}
	err := p.list(func() error {
		s, err := read()
		if err != nil {
			return err
		}
		if sorted && len(out) > 0 && out[len(out)-1] >= s {
			return p.errorf("%s not sorted and unique: %q after %q", what, s, out[len(out)-1])
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

func parseATerm(data []byte) (*Derivation, error) {
	p := &parser{data: data}
	d := &Derivation{
		Outputs:          map[string]Output{},
		InputDerivations: map[string][]string{},
		Env:              map[string]string{},
	}
	if err := p.expect(atermPrefix); err != nil {
		return nil, err
	}
	last := ""
	err := p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		var f [4]string
		for i := range f {
			if i > 0 {
				if err := p.expect(","); err != nil {
					return err
				}
			}
			s, err := p.rawString()
			if err != nil {
				return err
			}
			f[i] = s
		}
		if len(d.Outputs) > 0 && last >= f[0] {
			return p.errorf("outputs not sorted and unique: %q after %q", f[0], last)
		}
		last = f[0]
		d.Outputs[f[0]] = Output{Path: f[1], HashAlgo: f[2], Hash: f[3]}
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	last = ""
	err = p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		path, err := p.rawString()
		if err != nil {
			return err
		}
		if len(d.InputDerivations) > 0 && last >= path {
			return p.errorf("input derivations not sorted and unique: %q after %q", path, last)
		}
		last = path
		if err := p.expect(","); err != nil {
			return err
		}
		outs, err := p.stringList(p.rawString, true, "input derivation outputs")
		if err != nil {
			return err
		}
		d.InputDerivations[path] = outs
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.InputSources, err = p.stringList(p.rawString, true, "input sources"); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.System, err = p.rawString(); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.Builder, err = p.escapedString(); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.Args, err = p.stringList(p.escapedString, false, "arguments"); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	last = ""
	err = p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		k, err := p.escapedString()
		if err != nil {
			return err
		}
		if len(d.Env) > 0 && last >= k {
			return p.errorf("environment not sorted and unique: %q after %q", k, last)
		}
		last = k
		if err := p.expect(","); err != nil {
			return err
		}
		v, err := p.escapedString()
		if err != nil {
			return err
		}
		d.Env[k] = v
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if p.pos != len(data) {
		return nil, p.errorf("trailing bytes after the derivation")
	}
	return d, nil
}

// Clone returns a deep copy of d.
func (d *Derivation) Clone() *Derivation {
	c := *d
	c.Outputs = make(map[string]Output, len(d.Outputs))
	for k, v := range d.Outputs {
		c.Outputs[k] = v
	}
	c.InputDerivations = make(map[string][]string, len(d.InputDerivations))
	for k, v := range d.InputDerivations {
		c.InputDerivations[k] = slices.Clone(v)
	}
	c.InputSources = slices.Clone(d.InputSources)
	c.Args = slices.Clone(d.Args)
	c.Env = make(map[string]string, len(d.Env))
	for k, v := range d.Env {
		c.Env[k] = v
	}
	return &c
}
