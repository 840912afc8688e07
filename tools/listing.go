package tools

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// navRing is a bounded log of a tab's entries, each tagged with the
// main-frame navigation it belongs to. It keeps the entries of the last
// keptNavigations navigations and at most a given number of entries, oldest
// dropped first. Ids count up from 1 and are never reused, so an id from an
// older list names the same entry or none. The zero value is ready to use;
// the owner guards it.
type navRing[T any] struct {
	entries []navEntry[T] // in id order
	lastID  int
	nav     int            // number of the current navigation
	navURLs map[int]string // URL of each kept navigation
}

type navEntry[T any] struct {
	id, nav int
	v       T
}

// add appends v to the current navigation and returns its id, and the
// entries dropped to stay within limit.
func (r *navRing[T]) add(v T, limit int) (int, []T) {
	r.lastID++
	r.entries = append(r.entries, navEntry[T]{id: r.lastID, nav: r.nav, v: v})
	var dropped []T
	for len(r.entries) > limit {
		dropped = append(dropped, r.entries[0].v)
		r.entries[0] = navEntry[T]{} // let the dropped value go before the array is reallocated
		r.entries = r.entries[1:]
	}
	return r.lastID, dropped
}

// dropOldest drops the oldest entry and returns it.
func (r *navRing[T]) dropOldest() (T, bool) {
	if len(r.entries) == 0 {
		var zero T
		return zero, false
	}
	v := r.entries[0].v
	r.entries[0] = navEntry[T]{}
	r.entries = r.entries[1:]
	return v, true
}

// navigate starts a new navigation to url. Entries of the navigation that
// just ended for which carry is true move to the new one: a document's own
// request is sent before the browser announces the navigation. Entries
// older than keptNavigations navigations are dropped and returned.
func (r *navRing[T]) navigate(url string, carry func(T) bool) []T {
	prev := r.nav
	r.nav++
	if r.navURLs == nil {
		r.navURLs = map[int]string{}
	}
	r.navURLs[r.nav] = url
	delete(r.navURLs, r.nav-keptNavigations)
	oldest := r.nav - keptNavigations + 1
	var dropped []T
	kept := r.entries[:0]
	for _, e := range r.entries {
		if e.nav == prev && carry != nil && carry(e.v) {
			e.nav = r.nav
		}
		if e.nav < oldest {
			dropped = append(dropped, e.v)
			continue
		}
		kept = append(kept, e)
	}
	clear(r.entries[len(kept):])
	r.entries = kept
	return dropped
}

// find returns the entry with id.
func (r *navRing[T]) find(id int) (navEntry[T], bool) {
	i := sort.Search(len(r.entries), func(i int) bool { return r.entries[i].id >= id })
	if i < len(r.entries) && r.entries[i].id == id {
		return r.entries[i], true
	}
	return navEntry[T]{}, false
}

// pick returns the entries of the current navigation (or of every kept
// navigation when all is true) that keep accepts, oldest first, as a copy;
// how many entries the earlier navigations hold; and the header of each
// navigation picked from.
func (r *navRing[T]) pick(all bool, keep func(T) bool) ([]navEntry[T], int, map[int]string) {
	var out []navEntry[T]
	earlier := 0
	labels := map[int]string{}
	for _, e := range r.entries {
		if e.nav != r.nav && !all {
			earlier++
			continue
		}
		if keep(e.v) {
			out = append(out, e)
			labels[e.nav] = r.navLabel(e.nav)
		}
	}
	return out, earlier, labels
}

// forgotten says why id names no entry: whether it was given out once and
// dropped since, or never given out.
func (r *navRing[T]) forgotten(id int) bool { return id >= 1 && id <= r.lastID }

// navLabel names navigation nav for a list header.
func (r *navRing[T]) navLabel(nav int) string {
	url, ok := r.navURLs[nav]
	switch {
	case nav == r.nav && ok:
		return "Current navigation: " + clipMiddle(url, listURLWidth)
	case nav == r.nav:
		return "Current navigation"
	case ok:
		return "Earlier navigation: " + clipMiddle(url, listURLWidth)
	default:
		return "Before the first navigation seen"
	}
}

// clipEnd shortens s to at most n bytes (on a rune boundary), marking the cut.
func clipEnd(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// clipMiddle shortens s to about n bytes by cutting out its middle, so a URL
// keeps its host and its file name.
func clipMiddle(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head, tail := n*2/3, n-n*2/3-1
	for head > 0 && s[head]&0xC0 == 0x80 {
		head--
	}
	start := len(s) - tail
	for start < len(s) && s[start]&0xC0 == 0x80 {
		start++
	}
	return s[:head] + "…" + s[start:]
}

// singleLine makes s fit a list line.
func singleLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	return clipEnd(s, n)
}

// pagingArgs are the pageSize and pageIdx parameters of a list tool;
// argument structs embed it.
type pagingArgs struct {
	// PageSize is a pointer because 0 is refused, not the default.
	PageSize *int `json:"pageSize"`
	PageIdx  int  `json:"pageIdx"`
}

// listPaging returns the range of the n items to show on page p, or an
// error.
func listPaging(p pagingArgs, n int) (from, to int, err error) {
	size, idx := defaultListPageSize, p.PageIdx
	if p.PageSize != nil {
		size = *p.PageSize
	}
	if size <= 0 {
		return 0, 0, argErrorf("pageSize must be a positive integer")
	}
	if idx < 0 {
		return 0, 0, argErrorf("pageIdx must be 0 or more (0 is the first page)")
	}
	pages := max(1, (n+size-1)/size)
	if idx >= pages {
		return 0, 0, argErrorf("pageIdx %d is past the last page; with pageSize %d there are %d page(s), pageIdx 0 to %d", idx, size, pages, pages-1)
	}
	from = idx * size
	return from, min(from+size, n), nil
}

// pagingFooter tells which items a list shows and how to get the others.
func pagingFooter(from, to, n int, p pagingArgs, noun string) string {
	if n == 0 {
		return ""
	}
	s := fmt.Sprintf("Showing %d-%d of %d %s.", from+1, to, n, noun)
	idx := p.PageIdx
	if to < n {
		s += fmt.Sprintf(" Next page: pageIdx=%d.", idx+1)
	}
	if from > 0 {
		s += fmt.Sprintf(" Previous page: pageIdx=%d.", idx-1)
	}
	return s
}

// typeFilter reads raw, the argument arg, as an array of names and checks
// each against valid.
func typeFilter(raw any, arg string, valid []string) (map[string]bool, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, argErrorf("%s must be an array of strings, e.g. [%q]", arg, valid[0])
	}
	set := map[string]bool{}
	for _, v := range list {
		s, _ := v.(string)
		if !slices.Contains(valid, s) {
			return nil, argErrorf("%v is not one of the %s; use %s", v, arg, strings.Join(valid, ", "))
		}
		set[s] = true
	}
	if len(set) == 0 {
		return nil, nil
	}
	return set, nil
}

// listWords are the words of a list tool's answer (list_console_messages,
// list_network_requests).
type listWords struct {
	title                           string // "Console messages"
	noneOfTypes, none, noneSinceNav string // when the page of items is empty
	kept, preserveArg               string // "message(s)", "includePreservedMessages"
}

// formatList renders a page of items, one line each; with all, under a
// header per navigation.
func formatList[T any](w listWords, pageID int, items []T, nav func(T) int, line func(T) string, labels map[int]string, all bool, earlier int, filtered bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s of page %d\n", w.title, pageID)
	if len(items) == 0 {
		switch {
		case filtered:
			b.WriteString(w.noneOfTypes)
		case all:
			b.WriteString(w.none)
		default:
			b.WriteString(w.noneSinceNav)
		}
		if !all && earlier > 0 {
			fmt.Fprintf(&b, " %d %s of earlier navigations are kept: pass %s=true to see them.", earlier, w.kept, w.preserveArg)
		}
		b.WriteByte('\n')
		return b.String()
	}
	cur := -1
	for _, it := range items {
		if n := nav(it); all && n != cur {
			cur = n
			fmt.Fprintf(&b, "### %s\n", labels[cur])
		}
		b.WriteString(line(it))
		b.WriteByte('\n')
	}
	return b.String()
}
