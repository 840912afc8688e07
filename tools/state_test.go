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
