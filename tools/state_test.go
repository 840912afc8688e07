package tools

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
)

// TestSettleAfterOverlappingNavigations replays what Chromium 156 sends when
// a navigation fails (refused by the page guard, or an unsafe port) and the
// next one starts before the failed one's error page commits: two starts,
// one stop. The next navigation is finished at that stop; counting stops
// against starts left every later navigation of the tab waiting out its cap.
func TestSettleAfterOverlappingNavigations(t *testing.T) {
	s := NewTabState("MAIN")
	main := cdp.FrameID("MAIN")
	start := func(url string) {
		s.Listen(&page.EventFrameStartedNavigating{FrameID: main, URL: url, NavigationType: page.FrameStartedNavigatingNavigationTypeDifferentDocument})
		s.Listen(&page.EventFrameStartedLoading{FrameID: main})
	}
	stop := func() { s.Listen(&page.EventFrameStoppedLoading{FrameID: main}) }
	ctx := context.Background()
	// A bound, not a timing: without the stop settle can only time out.
	const bound = 5 * time.Second

	start("http://a.test/")
	stop()
	m := s.mark()
	start("http://a.test/redir") // refused: Page.navigate answers with its error
	m2 := s.mark()
	start("http://a.test/next")
	if _, done := s.settle(ctx, m2, 50*time.Millisecond); done {
		t.Fatal("settled before the main frame stopped loading")
	}
	stop() // the only stop, after both the error page and the next page committed
	if url, done := s.settle(ctx, m2, bound); !done || url != "http://a.test/next" {
		t.Errorf("settle after the next navigation stopped = %q, %v; want it finished", url, done)
	}
	if _, done := s.settle(ctx, m, bound); !done {
		t.Error("settle since before the refused navigation did not finish")
	}
	// Later navigations settle at their own stop, the overlap forgotten.
	m3 := s.mark()
	start("http://a.test/later")
	if _, done := s.settle(ctx, m3, 50*time.Millisecond); done {
		t.Fatal("a later navigation settled before it stopped loading")
	}
	stop()
	if _, done := s.settle(ctx, m3, bound); !done {
		t.Error("a later navigation did not settle at its stop")
	}
	// A subframe's stop is not the page's.
	m4 := s.mark()
	start("http://a.test/sub")
	s.Listen(&page.EventFrameStoppedLoading{FrameID: "CHILD"})
	if _, done := s.settle(ctx, m4, 50*time.Millisecond); done {
		t.Error("settled at a subframe's stop")
	}
}

// TestSettleAtTheLoadEvent: a navigation ends at the load event of the
// document it committed, without waiting for frameStoppedLoading; a load
// event of an older document (a refused navigation's error page committing
// after the next navigation started) ends nothing.
func TestSettleAtTheLoadEvent(t *testing.T) {
	s := NewTabState("MAIN")
	main := cdp.FrameID("MAIN")
	start := func(url string, loader cdp.LoaderID) {
		s.Listen(&page.EventFrameStartedNavigating{FrameID: main, URL: url, LoaderID: loader, NavigationType: page.FrameStartedNavigatingNavigationTypeDifferentDocument})
	}
	commit := func(loader cdp.LoaderID) {
		s.Listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: main, LoaderID: loader}})
	}
	load := func() { s.Listen(&page.EventLoadEventFired{}) }
	ctx := context.Background()
	const bound = 5 * time.Second

	pending := func(m navMark, why string) {
		t.Helper()
		if _, done := s.settle(ctx, m, 50*time.Millisecond); done {
			t.Fatal("settled " + why)
		}
	}
	finished := func(m navMark, want string) {
		t.Helper()
		if url, done := s.settle(ctx, m, bound); !done || url != want {
			t.Fatalf("settle after the load of %s = %q, %v; want it finished", want, url, done)
		}
	}

	m := s.mark()
	start("http://a.test/", "L1")
	load() // the old document's load, before the commit
	pending(m, "at a load event before the navigation committed")
	commit("L1")
	load()
	finished(m, "http://a.test/")

	m = s.mark()
	start("http://a.test/refused", "L2")
	start("http://a.test/next", "L3")
	commit("L2") // the error page of the refused one
	load()
	pending(m, "at the load of an older navigation's error page")
	commit("L3")
	load()
	finished(m, "http://a.test/next")

	// A subframe's commit is not the page's.
	m = s.mark()
	start("http://a.test/sub", "L4")
	s.Listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "CHILD", LoaderID: "L4"}})
	load()
	pending(m, "after a subframe's commit")
}
