package tracesum

import (
	"bytes"
	"fmt"
	"strconv"
)

// Write formats the summary for the caller.
func (s Summary) Write(b *bytes.Buffer) {
	span := ms(s.span / 1000)
	if s.span >= 1e6 {
		span = fmt.Sprintf("%.1f s", s.span/1e6)
	}
	fmt.Fprintf(b, "Trace: %d events over %s.\n", s.events, span)
	s.writeLoad(b)
	s.writeVitals(b)
	s.writeLongTasks(b)
	s.writeRequests(b)
}

func (s Summary) writeLoad(b *bytes.Buffer) {
	n := s.Nav
	b.WriteString("\n## Page load\n")
	switch {
	case n.FromPage:
		fmt.Fprintf(b, "The trace has no page load (start it with reload true to trace one); these figures come from the page's own Performance API for %s:\n", n.URL)
	case n.Found():
		fmt.Fprintf(b, "Navigation to %s, times from its start:\n", n.URL)
	default:
		b.WriteString("The trace has no page load and the page's timings could not be read; start it with reload true to trace one.\n")
	}
	fmt.Fprintf(b, "- TTFB: %s\n- First Contentful Paint: %s\n- DOMContentLoaded: %s\n- Load: %s\n", ms(n.TTFB), ms(n.FCP), ms(n.DCL), ms(n.Load))
}

func (s Summary) writeVitals(b *bytes.Buffer) {
	n := s.Nav
	b.WriteString("\n## Core Web Vitals\n")
	if n.LCP >= 0 {
		what := ""
		if n.LCPWhat != "" {
			what = " — " + n.LCPWhat
		}
		fmt.Fprintf(b, "- LCP: %s%s\n", ms(n.LCP), what)
	} else {
		b.WriteString("- LCP: n/a (no largest-contentful-paint candidate for a page load in the trace)\n")
	}
	if s.clsKnown {
		fmt.Fprintf(b, "- CLS: %.4f (%s", s.cls, count(s.shifts, "layout shift"))
		if s.excluded > 0 {
			fmt.Fprintf(b, ", %d after recent input not counted", s.excluded)
		}
		b.WriteString(")\n")
	} else {
		b.WriteString("- CLS: n/a (no layout shift and no page load in the trace)\n")
	}
}

func (s Summary) writeLongTasks(b *bytes.Buffer) {
	b.WriteString("\n## Long tasks (main thread, over 50 ms)\n")
	switch {
	case !s.threads:
		b.WriteString("n/a (the trace does not name the renderer's main thread)\n")
	case len(s.tasks) == 0:
		b.WriteString("None.\n")
	default:
		var total, longest float64
		for _, tk := range s.tasks {
			total += tk.dur
			longest = max(longest, tk.dur)
		}
		fmt.Fprintf(b, "%s, %s in total, the longest %s.\n", count(len(s.tasks), "long task"), ms(total/1000), ms(longest/1000))
		for i, tk := range s.tasks {
			if i == 5 {
				fmt.Fprintf(b, "- … and %d more\n", len(s.tasks)-5)
				break
			}
			at := ""
			if s.navStart > 0 && tk.ts >= s.navStart {
				at = fmt.Sprintf(" at %s after navigation start", ms((tk.ts-s.navStart)/1000))
			}
			fmt.Fprintf(b, "- %s%s\n", ms(tk.dur/1000), at)
		}
	}
}

func (s Summary) writeRequests(b *bytes.Buffer) {
	b.WriteString("\n## Heaviest requests (by transferred size)\n")
	if len(s.requests) == 0 {
		b.WriteString("n/a (no request of the page in the trace)\n")
		return
	}
	var total int64
	for _, rq := range s.requests {
		total += max(rq.size, 0)
	}
	fmt.Fprintf(b, "%s, %s transferred.\n", count(len(s.requests), "request"), Size(total))
	for i, rq := range s.requests[:min(5, len(s.requests))] {
		fmt.Fprintf(b, "%d. %s %s — %s\n", i+1, rq.method, rq.url, rq.line())
	}
}

// line says a request's size, status and duration.
func (rq *request) line() string {
	size := "size n/a"
	if rq.size >= 0 {
		size = Size(rq.size)
	}
	status := "no response"
	switch {
	case rq.failed:
		status = "failed"
	case rq.status != 0:
		status = strconv.Itoa(rq.status)
		if rq.mime != "" {
			status += " " + rq.mime
		}
	}
	if rq.cached {
		status += " (cache)"
	}
	dur := "not finished within the trace"
	if rq.finish > rq.send {
		dur = ms((rq.finish - rq.send) / 1000)
	}
	return size + ", " + status + ", " + dur
}

// lcpWhat names the element of an LCP candidate.
func lcpWhat(kind, nodeName string, nodeID int64) string {
	el := nodeName
	if el == "" && nodeID != 0 {
		el = fmt.Sprintf("node %d", nodeID)
	}
	switch {
	case kind != "" && el != "":
		return kind + " <" + el + ">"
	case el != "":
		return "<" + el + ">"
	default:
		return kind
	}
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// ms formats v milliseconds; a negative v is unknown.
func ms(v float64) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f ms", v)
}

// Size formats n bytes: 900 B, 4.9 kB, 1.2 MB.
func Size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
