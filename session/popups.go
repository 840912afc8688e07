package session

import (
	"context"
	"fmt"
	"time"

	"github.com/chromedp/cdproto/target"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// Refusal reasons of the page policy and of popups.
const (
	ReasonPagePolicy = "page_policy" // a page's request the page policy refused, in the browser
	ReasonPopupLimit = "popup_limit" // a popup beyond the session's page limit, closed
)

// popupWait bounds how long a tool result waits for popups still being
// adopted, so that the result of the click that opened one can say so.
const popupWait = 2 * time.Second

var _ browserpool.Owner = (*Session)(nil)

// Opening implements browserpool.Owner: a popup is on its way, and the
// result of the call under way waits for it (waitPopups).
func (s *Session) Opening(target.ID) {
	s.mu.Lock()
	s.adopting++
	s.mu.Unlock()
}

// Popup implements browserpool.Owner: the guard started target id, which a
// page of this session opened, guarded already; the session adopts it.
func (s *Session) Popup(id, opener target.ID, ok bool) {
	if !ok {
		s.addNotice(fmt.Sprintf("Note: page %d opened a popup, which was closed because the proxy could not guard it.", s.pageOf(opener)))
		s.adopted1()
		return
	}
	go s.adoptPopup(id, opener)
}

// adopted1 ends the wait for one popup.
func (s *Session) adopted1() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adopting--
	if s.adopting <= 0 && s.adopted != nil {
		close(s.adopted)
		s.adopted = nil
	}
}

// Refused implements browserpool.Owner: audit and count the refusal.
func (s *Session) Refused(id target.ID, url, reason string) {
	page := s.pageOf(id)
	s.mgr.cfg.Metrics.refused(ReasonPagePolicy)
	s.mgr.cfg.Audit.Warn().Bool("audit", true).Str("event", "denied").Str("user", s.UserID).Str("session", s.ID).
		Int("page", page).Str("url", router.Redact(url)).Str("reason", ReasonPagePolicy).Str("detail", reason).Send()
}

// pageOf returns the page id of target id, 0 when it is not one of the
// session's pages (a frame or worker of one).
func (s *Session) pageOf(id target.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, t := range s.tabs {
		if t.TargetID == id {
			return pid
		}
	}
	return 0
}

func (s *Session) adoptPopup(id, opener target.ID) {
	defer s.adopted1()
	b, ok := s.mgr.pool.Get(s.UserID)
	if !ok {
		return
	}
	c, err := b.Conn(context.Background(), 0)
	if err != nil {
		return
	}
	openerPage := s.pageOf(opener)
	if err := s.roomForTab(); err != nil {
		c.Guard.Release(id, s)
		closeTarget(c.Ctx, id)
		s.mgr.refuse(s.UserID, s.ID, "", ReasonPopupLimit, "a popup beyond the page limit was closed")
		s.addNotice(fmt.Sprintf("Note: page %d opened a popup, which was closed: %s.", openerPage, err))
		return
	}
	cctx, cancel := context.WithTimeout(c.Ctx, s.mgr.cfg.CallTimeout)
	defer cancel()
	t, err := s.attachAs(cctx, c, id, true, openerPage, true, false)
	if err != nil {
		c.Guard.Release(id, s)
		closeTarget(c.Ctx, id)
		s.addNotice(fmt.Sprintf("Note: page %d opened a popup, which was closed because the proxy could not attach to it: %v.", openerPage, err))
		return
	}
	s.addNotice(fmt.Sprintf("Note: page %d opened a popup: page %d (pageId %d drives it).", openerPage, t.ID, t.ID))
}

// addNotice queues a note for the next tool result.
func (s *Session) addNotice(n string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notice != "" {
		s.notice += "\n"
	}
	s.notice += n
}

// waitPopups waits, up to popupWait, for the popups being adopted.
func (s *Session) waitPopups(ctx context.Context) {
	s.mu.Lock()
	if s.adopting <= 0 {
		s.mu.Unlock()
		return
	}
	if s.adopted == nil {
		s.adopted = make(chan struct{})
	}
	ch := s.adopted
	s.mu.Unlock()
	timer := time.NewTimer(popupWait)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
	case <-ctx.Done():
	}
}
