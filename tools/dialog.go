package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// maxDialogMessage bounds the dialog message kept and shown: a page chooses
// it and may make it huge.
const maxDialogMessage = 500

// pendingDialog is a JavaScript dialog that waits for an answer.
type pendingDialog struct {
	seq           uint64 // tells one dialog from the next one of the tab
	typ           page.DialogType
	message       string
	defaultPrompt string
}

// dialogState tracks a tab's pending JavaScript dialog. While one is open the
// page runs no script, so every Runtime call hangs until it is handled; the
// tools ask this state first instead of finding out by a timeout.
type dialogState struct {
	mu      sync.Mutex
	seq     uint64
	pending *pendingDialog
	opened  chan struct{} // closed while a dialog is open; nil until needed
}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (d *dialogState) listen(ev any) {
	switch e := ev.(type) {
	case *page.EventJavascriptDialogOpening:
		d.mu.Lock()
		defer d.mu.Unlock()
		d.seq++
		d.pending = &pendingDialog{seq: d.seq, typ: e.Type, message: truncate(e.Message, maxDialogMessage), defaultPrompt: truncate(e.DefaultPrompt, maxDialogMessage)}
		if d.opened == nil {
			d.opened = make(chan struct{})
		}
		select {
		case <-d.opened:
		default:
			close(d.opened)
		}
	case *page.EventJavascriptDialogClosed:
		d.mu.Lock()
		defer d.mu.Unlock()
		d.clearLocked()
	}
}

func (d *dialogState) clearLocked() {
	d.pending = nil
	if d.opened != nil {
		select {
		case <-d.opened:
			d.opened = nil // the next dialog gets a fresh channel
		default:
		}
	}
}

// current returns the pending dialog, or nil.
func (d *dialogState) current() *pendingDialog {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		return nil
	}
	p := *d.pending
	return &p
}

// handled forgets dialog seq once handle_dialog answered it, without waiting
// for the closed event; a newer dialog stays.
func (d *dialogState) handled(seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending != nil && d.pending.seq == seq {
		d.clearLocked()
	}
}

// openedChan returns a channel that is closed once a dialog is open (already
// closed when one is open now).
func (d *dialogState) openedChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opened == nil {
		d.opened = make(chan struct{})
	}
	return d.opened
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// describe says what the dialog is, in one phrase.
func (p *pendingDialog) describe() string {
	s := fmt.Sprintf("%s dialog is open: %s", articled(string(p.typ)), quote(p.message))
	if p.typ == page.DialogTypePrompt && p.defaultPrompt != "" {
		s += fmt.Sprintf(" (default answer %s)", quote(p.defaultPrompt))
	}
	return s
}

func articled(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "An " + word
	}
	return "A " + word
}

// dialogNotice lists the pending dialogs of the calling session's open tabs,
// one line each, or "" when there is none; a dialog that the text of res
// already tells of is left out (that text is gathered only once a dialog
// is open). It makes no browser call.
func dialogNotice(ctx context.Context, res *mcp.CallToolResult) string {
	ws, ok := WorkspaceFrom(ctx)
	if !ok {
		return ""
	}
	var lines []string
	var already *string // the result's text, once a dialog is open
	for _, tab := range ws.OpenTabs() {
		if tab == nil || tab.State == nil || tab.Ctx.Err() != nil {
			continue
		}
		p := tab.State.dialog.current()
		if p == nil {
			continue
		}
		if already == nil {
			already = ptr(resultText(res))
		}
		if !strings.Contains(*already, p.describe()) {
			lines = append(lines, fmt.Sprintf("Page %d: %s; call handle_dialog (pageId %d) to accept or dismiss it. The page is frozen until then.", tab.ID, p.describe(), tab.ID))
		}
	}
	return strings.Join(lines, "\n")
}

// withDialogNotice appends the pending dialogs to a tool result, so that the
// caller learns why the page stopped answering whatever tool it called.
func withDialogNotice(ctx context.Context, res *mcp.CallToolResult) *mcp.CallToolResult {
	if res == nil {
		return res
	}
	if n := dialogNotice(ctx, res); n != "" {
		res.Content = append(res.Content, mcp.NewTextContent(n))
	}
	return res
}

type handleDialogArgs struct {
	pageArg
	Action     string `json:"action"`
	PromptText string `json:"promptText"`
}

func (t *toolset) handleDialog() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("handle_dialog",
			mcp.WithDescription("Accept or dismiss a page's open alert, confirm, prompt or beforeunload."),
			mcp.WithString("action", mcp.Required(), mcp.Enum("accept", "dismiss")),
			mcp.WithString("promptText"),
			mcp.WithNumber("pageId", mcp.Description("Default: the only page with a dialog")),
			mcp.WithReadOnlyHintAnnotation(false),
			// Accepting a confirm dialog can be what deletes something.
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a handleDialogArgs) (*mcp.CallToolResult, error) {
			var accept bool
			switch action := a.Action; action {
			case "accept":
				accept = true
			case "dismiss":
			default:
				return mcp.NewToolResultErrorf(`handle_dialog: action must be "accept" or "dismiss", not %q`, action), nil
			}
			tab, err := dialogTab(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			p := tab.State.dialog.current()
			if p == nil {
				return mcp.NewToolResultErrorf("handle_dialog: page %d has no open dialog; nothing to handle", tab.ID), nil
			}
			params := page.HandleJavaScriptDialogParams{Accept: accept}
			if accept && p.typ == page.DialogTypePrompt {
				params.PromptText = a.PromptText
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			if _, err := chromedp.Call(cctx, page.HandleJavaScriptDialog, params); err != nil {
				if tab.State.dialog.current() == nil {
					return mcp.NewToolResultErrorf("handle_dialog: the dialog of page %d closed by itself before it was handled", tab.ID), nil
				}
				return nil, cdpError("handle_dialog", cctx, tab, t.cfg.CallTimeout, err)
			}
			tab.State.dialog.handled(p.seq)
			verb := "Dismissed"
			if accept {
				verb = "Accepted"
			}
			msg := fmt.Sprintf("%s the %s dialog %s of page %d.", verb, p.typ, quote(p.message), tab.ID)
			if params.PromptText != "" {
				msg += " Answered " + quote(params.PromptText) + "."
			}
			return mcp.NewToolResultText(msg), nil
		}),
	}
}

// dialogTab picks the tab for handle_dialog without opening one: the named
// page, else the selected page when it has a dialog, else the only page with
// one.
func dialogTab(ctx context.Context, pageID int) (*Tab, error) {
	ws, err := workspaceFrom(ctx)
	if err != nil {
		return nil, err
	}
	tabs := ws.OpenTabs()
	if len(tabs) == 0 {
		return nil, errors.New("handle_dialog: this session has no pages, so there is no dialog to handle")
	}
	if pageID != 0 {
		tab, err := ws.Tab(ctx, pageID)
		if err != nil {
			return nil, err
		}
		return tab, nil
	}
	var withDialog []*Tab
	for _, tab := range tabs {
		if tab.Ctx.Err() == nil && tab.State.dialog.current() != nil {
			withDialog = append(withDialog, tab)
		}
	}
	selected, err := ws.Tab(ctx, 0)
	if err != nil {
		return nil, err
	}
	if selected.State.dialog.current() != nil || len(withDialog) == 0 {
		return selected, nil
	}
	if len(withDialog) == 1 {
		return withDialog[0], nil
	}
	ids := make([]string, len(withDialog))
	for i, tab := range withDialog {
		ids[i] = fmt.Sprint(tab.ID)
	}
	return nil, fmt.Errorf("handle_dialog: pages %s have open dialogs; give the pageId of the one to handle", strings.Join(ids, ", "))
}
