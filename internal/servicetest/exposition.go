package servicetest

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Family is one metric family of a Prometheus text exposition (0.0.4), as
// ParseExposition found it.
type Family struct {
	Type string // counter, gauge, histogram, summary or untyped
	Help string // "" without a HELP line
	// Series counts the family's label sets: for a histogram or a summary,
	// those of its _bucket / quantile, _sum and _count samples taken
	// together (le and quantile aside).
	Series int
	// Counted counts the series of a histogram or summary that carry a
	// _sum and a _count (the Go runtime's histograms carry neither).
	Counted int
}

// ParseExposition parses a Prometheus text exposition strictly and checks
// what scrapers rely on: every sample belongs to a family announced by a
// # TYPE line before it, with the type's sample names (name_bucket{le},
// name_sum, name_count for a histogram; name{quantile}, _sum, _count for a
// summary; name alone otherwise); a family has at most one HELP and one
// TYPE line, both before its first sample, and its samples in one group; no
// series repeats; a histogram's buckets are cumulative and end in le="+Inf",
// which equals its _count; _sum and _count come together. It returns the
// families by name, or the first problem with its line number.
func ParseExposition(text []byte) (map[string]*Family, error) {
	p := parser{
		families: map[string]*Family{}, helped: map[string]bool{}, started: map[string]bool{},
		seen: map[string]bool{}, groups: map[string]*group{},
	}
	if len(text) > 0 && text[len(text)-1] != '\n' {
		return nil, fmt.Errorf("the exposition does not end with a line feed")
	}
	for n, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		if err := p.line(line); err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
	}
	if err := p.closeFamily(); err != nil {
		return nil, err
	}
	return p.families, nil
}

// group is one series of a histogram or summary: its buckets (by le) or
// quantiles, sum and count.
type group struct {
	buckets     map[float64]float64
	quantiles   int
	sum, count  bool
	countValue  float64
	description string
}

type parser struct {
	families map[string]*Family
	cur      string          // the family of the last TYPE line
	helped   map[string]bool // families that had a HELP line, with or without text
	started  map[string]bool // families whose samples have begun
	seen     map[string]bool // series written (name and sorted labels)
	groups   map[string]*group
}

func (p *parser) line(line string) error {
	if strings.TrimSpace(line) == "" {
		return nil
	}
	if rest, ok := strings.CutPrefix(line, "#"); ok {
		return p.comment(strings.TrimLeft(rest, " \t"))
	}
	return p.sample(line)
}

func (p *parser) comment(c string) error {
	kind, rest, _ := strings.Cut(c, " ")
	if kind != "HELP" && kind != "TYPE" {
		return nil // a plain comment
	}
	name, text, _ := strings.Cut(strings.TrimLeft(rest, " \t"), " ")
	if !validName(name) {
		return fmt.Errorf("%s of an invalid metric name %q", kind, name)
	}
	if p.started[name] {
		return fmt.Errorf("%s of %s after its samples", kind, name)
	}
	f := p.families[name]
	if f == nil {
		f = &Family{}
		p.families[name] = f
	}
	if kind == "HELP" {
		if p.helped[name] {
			return fmt.Errorf("a second HELP for %s", name)
		}
		p.helped[name] = true
		f.Help = text
		return nil
	}
	if f.Type != "" {
		return fmt.Errorf("a second TYPE for %s", name)
	}
	switch text {
	case "counter", "gauge", "histogram", "summary", "untyped":
	default:
		return fmt.Errorf("unknown type %q", text)
	}
	if err := p.closeFamily(); err != nil {
		return err
	}
	f.Type = text
	p.cur = name
	return nil
}

func (p *parser) sample(line string) error {
	name, labels, value, err := splitSample(line)
	if err != nil {
		return err
	}
	if p.cur == "" {
		return fmt.Errorf("sample %s before any TYPE line", name)
	}
	f := p.families[p.cur]
	suffix, ok := strings.CutPrefix(name, p.cur)
	if !ok {
		return fmt.Errorf("sample %s is not of family %s, the last TYPE (no TYPE of its own, or its family is not in one group)", name, p.cur)
	}
	var special string // le or quantile
	switch f.Type {
	case "histogram":
		switch suffix {
		case "_bucket":
			special = "le"
		case "_sum", "_count":
		default:
			return fmt.Errorf("sample %s in histogram %s", name, p.cur)
		}
	case "summary":
		switch suffix {
		case "":
			special = "quantile"
		case "_sum", "_count":
		default:
			return fmt.Errorf("sample %s in summary %s", name, p.cur)
		}
	default:
		if suffix != "" {
			return fmt.Errorf("sample %s in %s %s", name, f.Type, p.cur)
		}
	}
	p.started[p.cur] = true
	key := name + "{" + joinLabels(labels, "") + "}"
	if p.seen[key] {
		return fmt.Errorf("series %s written twice", key)
	}
	p.seen[key] = true
	if f.Type != "histogram" && f.Type != "summary" {
		f.Series++
		return nil
	}
	gkey := joinLabels(labels, special)
	g := p.groups[gkey]
	if g == nil {
		g = &group{buckets: map[float64]float64{}, description: p.cur + "{" + gkey + "}"}
		p.groups[gkey] = g
		f.Series++
	}
	switch {
	case special == "le":
		le, ok := labels["le"]
		if !ok {
			return fmt.Errorf("bucket without le")
		}
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			return fmt.Errorf("le %q: %w", le, err)
		}
		g.buckets[bound] = value
	case special == "quantile":
		q, err := strconv.ParseFloat(labels["quantile"], 64)
		if err != nil || q < 0 || q > 1 {
			return fmt.Errorf("quantile %q", labels["quantile"])
		}
		g.quantiles++
	case suffix == "_sum":
		g.sum = true
	case suffix == "_count":
		g.count, g.countValue = true, value
	}
	return nil
}

// closeFamily checks the histogram or summary series of the family that
// ends (the last TYPE's) and forgets them.
func (p *parser) closeFamily() error {
	if p.cur == "" {
		return nil
	}
	f := p.families[p.cur]
	for _, g := range p.groups {
		if g.sum != g.count {
			return fmt.Errorf("%s: _sum and _count do not come together", g.description)
		}
		if g.count {
			f.Counted++
		}
		switch f.Type {
		case "histogram":
			inf, ok := g.buckets[math.Inf(1)]
			if !ok {
				return fmt.Errorf("%s: no le=\"+Inf\" bucket", g.description)
			}
			if g.count && inf != g.countValue {
				return fmt.Errorf("%s: +Inf bucket %v, _count %v", g.description, inf, g.countValue)
			}
			bounds := make([]float64, 0, len(g.buckets))
			for b := range g.buckets {
				bounds = append(bounds, b)
			}
			sort.Float64s(bounds)
			for i := 1; i < len(bounds); i++ {
				if g.buckets[bounds[i]] < g.buckets[bounds[i-1]] {
					return fmt.Errorf("%s: bucket le=%v holds %v, less than le=%v's %v", g.description, bounds[i], g.buckets[bounds[i]], bounds[i-1], g.buckets[bounds[i-1]])
				}
			}
		case "summary":
			if g.quantiles == 0 && !g.count {
				return fmt.Errorf("%s: neither quantiles nor _count", g.description)
			}
		}
	}
	p.groups = map[string]*group{}
	return nil
}

// splitSample splits "name{labels} value [timestamp]".
func splitSample(line string) (name string, labels map[string]string, value float64, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", nil, 0, fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	if !validName(name) {
		return "", nil, 0, fmt.Errorf("invalid metric name %q", name)
	}
	labels = map[string]string{}
	if strings.HasPrefix(rest, "{") {
		if rest, err = parseLabels(rest[1:], labels); err != nil {
			return "", nil, 0, err
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return "", nil, 0, fmt.Errorf("want one value and an optional timestamp after the series")
	}
	if value, err = strconv.ParseFloat(fields[0], 64); err != nil {
		return "", nil, 0, fmt.Errorf("value: %w", err)
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return "", nil, 0, fmt.Errorf("timestamp: %w", err)
		}
	}
	return name, labels, value, nil
}

// parseLabels reads `name="value",...}` into labels and returns what
// follows the closing brace.
func parseLabels(s string, labels map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " \t")
		if rest, ok := strings.CutPrefix(s, "}"); ok {
			return rest, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return "", fmt.Errorf("label without =")
		}
		name := strings.TrimSpace(s[:eq])
		if !validName(name) || strings.Contains(name, ":") {
			return "", fmt.Errorf("invalid label name %q", name)
		}
		if _, dup := labels[name]; dup {
			return "", fmt.Errorf("label %s twice", name)
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		if !strings.HasPrefix(s, `"`) {
			return "", fmt.Errorf("label %s: value not quoted", name)
		}
		var v strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] != '\\' {
				v.WriteByte(s[i])
				continue
			}
			i++
			if i == len(s) {
				break
			}
			switch s[i] {
			case '\\', '"':
				v.WriteByte(s[i])
			case 'n':
				v.WriteByte('\n')
			default:
				return "", fmt.Errorf("label %s: escape \\%c", name, s[i])
			}
		}
		if i >= len(s) {
			return "", fmt.Errorf("label %s: value not closed", name)
		}
		labels[name] = v.String()
		s = strings.TrimLeft(s[i+1:], " \t")
		if rest, ok := strings.CutPrefix(s, ","); ok {
			s = rest
		} else if !strings.HasPrefix(s, "}") {
			return "", fmt.Errorf("label %s: want , or } after its value", name)
		}
	}
}

// joinLabels writes labels sorted by name, without the one named skip.
func joinLabels(labels map[string]string, skip string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		if n != skip {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b bytes.Buffer
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n + "=" + strconv.Quote(labels[n]))
	}
	return b.String()
}

// validName reports whether s is a Prometheus metric name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}
