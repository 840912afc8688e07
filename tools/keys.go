package tools

import (
	"context"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools/internal/keys"
)

// maxTypedRunes bounds type_text: each character is a few browser calls.
const maxTypedRunes = 1000

// typeRunes types text with key events where a key makes the character, so
// that key handlers of the page run, and inserts the other characters.
func typeRunes(ctx context.Context, text string) error {
	for _, st := range keys.Type(text) {
		if st.Insert != "" {
			if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: st.Insert}); err != nil {
				return err
			}
		}
		for _, ev := range st.Events {
			if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, *ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func dispatchKeys(ctx context.Context, evs []input.DispatchKeyEventParams) error {
	return inRow(ctx, input.DispatchKeyEvent, evs)
}

// rowKey is the context key of the tab's Send, set by act for its input.
type rowKey struct{}

// inRow sends cmd with each of params on the page's session: all in a row,
// then waits for every answer, when act's context carries the tab's Send
// (the browser queues the input events of a page in order); else one
// after another through chromedp.
func inRow[P any](ctx context.Context, cmd cdp.Command[P, cdp.Empty], params []P) error {
	send, _ := ctx.Value(rowKey{}).(func(context.Context, string, any) (func() ([]byte, error), error))
	if send == nil || len(params) < 2 {
		for _, p := range params {
			if _, err := chromedp.Call(ctx, cmd, p); err != nil {
				return err
			}
		}
		return nil
	}
	waits := make([]func() ([]byte, error), 0, len(params))
	for _, p := range params {
		w, err := send(ctx, cmd.Method, p)
		if err != nil {
			return err
		}
		waits = append(waits, w)
	}
	var first error
	for _, w := range waits {
		if _, err := w(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// keyCombo is a parsed press_key argument (keys.Combo).
type keyCombo struct{ keys.Combo }

// parseKey parses "Enter", "a", "Control+A", "Control++", "Meta+Shift+K".
func parseKey(spec string) (keyCombo, error) {
	c, err := keys.Parse(spec)
	return keyCombo{c}, err
}

func (c keyCombo) events() []input.DispatchKeyEventParams { return c.Events() }
