package tools

import (
	"strings"
	"sync"
	"testing"

	jsonv2 "github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
)

// TestListenRecoversCollectorPanics: an event that makes a collector panic
// does not leave Listen (it runs on the tab's read loop, where a panic
// would end the process); the panic is counted, reported once per
// collector with its stack, and the next events are still taken.
func TestListenRecoversCollectorPanics(t *testing.T) {
	s := NewTabState("T1")
	var mu sync.Mutex
	var reports []ListenerPanic
	s.OnListenerPanic(func(p ListenerPanic) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	})
	// A console call with a missing argument: the console collector reads
	// each argument's fields.
	bad := &runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeLog, Args: []*runtime.RemoteObject{nil}}
	for range 3 {
		s.Listen(bad)
	}
	n, first := s.ListenerPanics()
	if n != 3 || first == nil || first.Collector != "console" || first.Value == "" || !strings.Contains(first.Stack, "consoleCall") {
		t.Fatalf("panics: %d %+v", n, first)
	}
	mu.Lock()
	if len(reports) != 1 || reports[0].Collector != "console" {
		t.Fatalf("reported %d times (want once): %+v", len(reports), reports)
	}
	mu.Unlock()

	// The tab goes on: navigations are tracked and console messages kept.
	m := s.mark()
	s.Listen(&page.EventFrameStartedNavigating{FrameID: "T1", URL: "http://127.0.0.1/next",
		NavigationType: page.FrameStartedNavigatingNavigationTypeDifferentDocument})
	if s.mark() == m {
		t.Error("a navigation after the panics was not tracked")
	}
	s.Listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeLog,
		Args: []*runtime.RemoteObject{{Type: runtime.RemoteObjectTypeString, Value: jsonv2.Value(`"after the panic"`)}}})
	got, _, _ := s.console.list(true, func(*consoleMsg) bool { return true })
	if len(got) != 1 || !strings.Contains(got[0].v.text, "after the panic") {
		t.Errorf("console after the panics: %+v", got)
	}
}
