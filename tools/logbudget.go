package tools

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/chromedp/cdproto/network"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools/internal/remoteobj"
)

// A page decides how much it logs and loads, so the console messages and
// network entries a tab keeps are bounded in bytes, not only in count: per
// tab, and across every tab of the process (a LogBudget). Sizes are
// estimates of what an entry holds (its texts plus a fixed overhead), not
// exact heap figures.

// Defaults of a LogBudget.
const (
	DefaultLogBytesPerTab = 4 << 20   // console and network of one tab, half each
	DefaultLogBytes       = 256 << 20 // every tab of the process
	// MinLogBytesPerTab is the smallest per-tab bound: a few entries.
	MinLogBytesPerTab = 64 << 10
)

// Caps of one kept value. A longer one is cut, with a marker that says how
// much was cut.
const (
	maxKeptText     = 4096 // a message's text, an argument, a URL
	maxKeptFrame    = 512  // one stack frame line
	maxKeptHeader   = 1024 // one header value
	maxHeadersKept  = 64   // headers kept of one request or response
	entryOverhead   = 256  // what an entry costs besides its texts
	headerOverhead  = 32   // what a header costs besides its name and value
	elementOverhead = 16   // what a slice element costs besides its text
)

// LogBudget bounds the bytes the console and network collectors keep: each
// tab at most PerTab (half for console messages, half for network entries;
// its oldest entries go first) and every tab together at most Total. When
// the total is reached, the biggest logs lose their oldest entries first,
// until the total is 1/16 below the bound. It is safe for concurrent use;
// one budget serves every tab of a process.
type LogBudget struct {
	perTab, total int64

	used atomic.Int64 // bytes kept by the logs that joined

	mu   sync.Mutex // guards logs; held while reclaiming
	logs map[*logAccount]struct{}
}

// NewLogBudget returns a budget of perTab bytes per tab and total bytes in
// all; zero or negative values take the defaults.
func NewLogBudget(perTab, total int64) *LogBudget {
	if perTab <= 0 {
		perTab = DefaultLogBytesPerTab
	}
	if total <= 0 {
		total = DefaultLogBytes
	}
	return &LogBudget{perTab: perTab, total: total, logs: map[*logAccount]struct{}{}}
}

// Used returns the bytes kept by every bound tab.
func (b *LogBudget) Used() int64 { return b.used.Load() }

// PerTab returns the bound of one tab.
func (b *LogBudget) PerTab() int64 { return b.perTab }

// logAccount is what one log (a tab's console or network collector) keeps.
// bytes and joined are written under the log's own lock; the budget reads
// bytes without it.
type logAccount struct {
	budget *LogBudget // nil: only the per-log limit applies
	limit  int64
	bytes  atomic.Int64
	joined bool // counted in budget.used (the tab is bound)
	// evictTo drops the log's oldest entries until it keeps at most n
	// bytes; it takes the log's lock.
	evictTo func(n int64)
}

// charge adds delta bytes to the log; callers hold the log's lock.
func (a *logAccount) charge(delta int64) {
	a.bytes.Add(delta)
	if a.joined {
		a.budget.used.Add(delta)
	}
}

// over reports whether the log keeps more than its own limit; callers hold
// the log's lock.
func (a *logAccount) over() bool { return a.limit > 0 && a.bytes.Load() > a.limit }

// settle makes room in the shared budget once the log's lock is released.
func (a *logAccount) settle() {
	if a.budget != nil {
		a.budget.reclaim()
	}
}

// join counts the log in its budget from now on, and ends the count when
// ctx (the tab) ends; lock and unlock are the log's lock.
func (a *logAccount) join(ctx context.Context, lock sync.Locker) {
	b := a.budget
	if b == nil {
		return
	}
	b.mu.Lock()
	b.logs[a] = struct{}{}
	b.mu.Unlock()
	lock.Lock()
	if !a.joined {
		a.joined = true
		b.used.Add(a.bytes.Load())
	}
	lock.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.logs, a)
		b.mu.Unlock()
		lock.Lock()
		if a.joined {
			a.joined = false
			b.used.Add(-a.bytes.Load())
		}
		lock.Unlock()
	})
	b.reclaim()
}

// reclaim drops the oldest entries of the biggest logs while the total is
// over the bound. It runs on a tab's read loop: when another goroutine is
// reclaiming already, it leaves the work to it.
func (b *LogBudget) reclaim() {
	if b.used.Load() <= b.total || !b.mu.TryLock() {
		return
	}
	defer b.mu.Unlock()
	low := b.total - b.total/16
	for b.used.Load() > low {
		var big *logAccount
		var bigN, second int64
		for a := range b.logs {
			n := a.bytes.Load()
			switch {
			case big == nil || n > bigN:
				second, big, bigN = bigN, a, n
			case n > second:
				second = n
			}
		}
		if big == nil || bigN == 0 {
			return
		}
		target := max(second, bigN-(b.used.Load()-low))
		if target >= bigN {
			target = bigN - 1
		}
		big.evictTo(target)
		if big.bytes.Load() >= bigN {
			return // nothing left to drop there
		}
	}
}

// cutText shortens s to at most n bytes (on a rune boundary) and says how
// many bytes were cut, e.g. "…[cut 9,812 bytes]".
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + remoteobj.CutMarker(len(s)-cut)
}

// keptHeaders returns a copy of h to keep: values as text, each cut at
// maxKeptHeader, at most maxHeadersKept headers (a "…" entry says how
// many more there were).
func keptHeaders(h network.Headers) network.Headers {
	if len(h) == 0 {
		return h
	}
	out := make(network.Headers, min(len(h), maxHeadersKept+1))
	dropped := 0
	for k, v := range h {
		if len(out) >= maxHeadersKept {
			dropped++
			continue
		}
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		out[cutText(k, maxKeptHeader)] = cutText(s, maxKeptHeader)
	}
	if dropped > 0 {
		out["…"] = fmt.Sprintf("[cut %d more headers]", dropped)
	}
	return out
}

// headersCost estimates the bytes h holds, as keptHeaders made it.
func headersCost(h network.Headers) int64 {
	var n int64
	for k, v := range h {
		s, _ := v.(string)
		n += int64(headerOverhead + len(k) + len(s))
	}
	return n
}
