package main

import (
	"fmt"
	"math"
	"strings"
)

// chart draws scenario 2's latency quantiles per path as an SVG: one panel
// for the time to the first event, one for the gap between events; grouped
// bars per quantile on a log scale, so p50 and p99.9 both stay readable.
func (rp *report) chart() string {
	paths := []string{"direct", "nginx", "relay"}
	colors := []string{"#9e9e9e", "#2e7d32", "#1565c0"}
	var rs []*Result
	for _, p := range paths {
		r := rp.med("s2", p)
		if r == nil {
			return ""
		}
		rs = append(rs, r)
	}
	panels := []struct {
		title string
		get   func(*Result) Summary
	}{
		{"time to first SSE event (ms)", func(r *Result) Summary { return r.FirstEvent }},
		{"gap between SSE events (ms)", func(r *Result) Summary { return r.Gap }},
	}
	quant := []struct {
		name string
		get  func(Summary) float64
	}{
		{"p50", func(s Summary) float64 { return s.P50Ms }},
		{"p90", func(s Summary) float64 { return s.P90Ms }},
		{"p99", func(s Summary) float64 { return s.P99Ms }},
		{"p99.9", func(s Summary) float64 { return s.P999Ms }},
	}
	const (
		pw, ph         = 420.0, 300.0 // panel
		left, top, gap = 50.0, 50.0, 40.0
		w              = left + 2*pw + gap + 20
		h              = top + ph + 70
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">Scenario 2: latency quantiles per path at %s streams/s, 20 chunks 5 ms apart (log scale)</text>`+"\n", left, rp.meta["s2_rate"])
	for pi, pn := range panels {
		x0 := left + float64(pi)*(pw+gap)
		lo, hi := math.Inf(1), 0.0
		for _, r := range rs {
			for _, q := range quant {
				v := q.get(pn.get(r))
				if v > 0 {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
		if hi == 0 {
			continue
		}
		dlo := math.Floor(math.Log10(lo))
		dhi := math.Ceil(math.Log10(hi))
		if dhi <= dlo {
			dhi = dlo + 1
		}
		y := func(v float64) float64 {
			if v <= 0 {
				v = math.Pow(10, dlo)
			}
			return top + ph - (math.Log10(v)-dlo)/(dhi-dlo)*ph
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", x0, top-12, pn.title)
		for d := dlo; d <= dhi; d++ {
			yy := y(math.Pow(10, d))
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, x0, x0+pw, yy, yy)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", x0-4, yy+4, tick(math.Pow(10, d)))
		}
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#333"/>`+"\n", x0, x0+pw, top+ph, top+ph)
		gw := pw / float64(len(quant))
		bw := gw * 0.8 / float64(len(rs))
		for qi, q := range quant {
			gx := x0 + float64(qi)*gw + gw*0.1
			for ri, r := range rs {
				v := q.get(pn.get(r))
				yy := y(v)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s %.3f ms</title></rect>`+"\n",
					gx+float64(ri)*bw, yy, bw-2, top+ph-yy, colors[ri], paths[ri], q.name, v)
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="#333">%s</text>`+"\n",
					gx+float64(ri)*bw+(bw-2)/2, yy-3, short(v))
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", gx+gw*0.4, top+ph+18, q.name)
		}
	}
	for i, p := range paths {
		x := left + float64(i)*110
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="14" height="14" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", x, h-30, colors[i], x+20, h-19, p)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func tick(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%g", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func short(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
