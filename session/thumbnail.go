package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// ErrPageNotFound is returned for a page ID that is not one of a session's
// pages.
var ErrPageNotFound = errors.New("page not found")

// thumbQuality is the JPEG quality of a thumbnail: enough to recognise a
// page, small enough to list many.
const thumbQuality = 60

// Thumbnail returns a JPEG of what page pageID of open session id shows, at
// most width CSS pixels wide. It only reads: it neither navigates, nor
// brings the tab to the front, nor changes its emulation, and it does not
// wait for the session's tool call in flight. The session's user or an
// admin decides to ask for it; the caller checks that.
func (m *Manager) Thumbnail(ctx context.Context, id string, pageID, width int) ([]byte, error) {
	s := m.lookup(id)
	if s == nil {
		return nil, ErrNotFound
	}
	s.mu.Lock()
	t := s.tabs[pageID]
	s.mu.Unlock()
	if t == nil {
		return nil, ErrPageNotFound
	}
	if t.Ctx.Err() != nil {
		return nil, fmt.Errorf("page %d is gone (its tab was closed or the browser connection dropped): %w", pageID, ErrPageNotFound)
	}
	cctx, cancel := context.WithTimeout(t.Ctx, m.cfg.CallTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	metrics, err := chromedp.Call(cctx, page.GetLayoutMetrics, cdp.Empty{})
	if err != nil {
		return nil, m.thumbError(cctx, t, err)
	}
	params := page.CaptureScreenshotParams{
		Format: page.CaptureScreenshotFormatJpeg, Quality: ptr(int64(thumbQuality)), OptimizeForSpeed: ptr(true),
	}
	if vv := metrics.CSSVisualViewport; vv != nil && vv.ClientWidth > 0 && vv.ClientHeight > 0 {
		// The clip is the visible viewport, scaled down in the browser, so
		// that the image is small without decoding it here.
		params.Clip = &page.Viewport{X: vv.PageX, Y: vv.PageY, Width: vv.ClientWidth, Height: vv.ClientHeight,
			Scale: min(1, float64(width)/vv.ClientWidth)}
	}
	shot, err := chromedp.Call(cctx, page.CaptureScreenshot, params)
	if err != nil {
		return nil, m.thumbError(cctx, t, err)
	}
	return shot.Data, nil
}

func (m *Manager) thumbError(cctx context.Context, t *tab, err error) error {
	switch {
	case t.Ctx.Err() != nil:
		return fmt.Errorf("page %d is gone (its tab was closed or the browser connection dropped): %w", t.ID, ErrPageNotFound)
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("the browser did not answer within %s; it may be busy, retry later", m.cfg.CallTimeout)
	}
	return fmt.Errorf("screenshot of page %d: %w", t.ID, err)
}

// lookup returns open session id, a default workspace included, or nil.
func (m *Manager) lookup(id string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[id]; ok {
		return s
	}
	for _, s := range m.defaults {
		if s.ID == id {
			return s
		}
	}
	return nil
}
