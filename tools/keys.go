package tools

import (
	"context"

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
	for _, ev := range evs {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, ev); err != nil {
			return err
		}
	}
	return nil
}

// keyCombo is a parsed press_key argument (keys.Combo).
type keyCombo struct{ keys.Combo }

// parseKey parses "Enter", "a", "Control+A", "Control++", "Meta+Shift+K".
func parseKey(spec string) (keyCombo, error) {
	c, err := keys.Parse(spec)
	return keyCombo{c}, err
}

func (c keyCombo) events() []input.DispatchKeyEventParams { return c.Events() }
