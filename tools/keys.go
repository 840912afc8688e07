package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// maxTypedRunes bounds type_text: each character is a few browser calls.
const maxTypedRunes = 1000

// typeRunes types text with key events where a key makes the character, so
// that key handlers of the page run, and inserts the other characters.
func typeRunes(ctx context.Context, text string) error {
	var other []rune
	flush := func() error {
		if len(other) == 0 {
			return nil
		}
		_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: string(other)})
		other = other[:0]
		return err
	}
	for _, r := range text {
		if r == '\n' {
			r = '\r'
		}
		// Only ASCII: kb also maps private-use runes to keys like ArrowLeft.
		if _, ok := kb.Keys[r]; !ok || r >= utf8.RuneSelf {
			other = append(other, r)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		for _, ev := range kb.Encode(r) {
			if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, *ev); err != nil {
				return err
			}
		}
	}
	return flush()
}

func dispatchKeys(ctx context.Context, evs []input.DispatchKeyEventParams) error {
	for _, ev := range evs {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, ev); err != nil {
			return err
		}
	}
	return nil
}

// keyCombo is a parsed press_key argument: modifier keys held around one key.
type keyCombo struct {
	mods []*kb.Key
	key  *kb.Key
}

var modifierBits = map[string]int64{"Alt": 1, "Control": 2, "Meta": 4, "Shift": 8}

// modifierNames maps the accepted spellings of modifiers to the DOM name.
var modifierNames = map[string]string{
	"control": "Control", "ctrl": "Control",
	"shift": "Shift",
	"alt":   "Alt", "option": "Alt",
	"meta": "Meta", "cmd": "Meta", "command": "Meta", "super": "Meta",
}

// keyAliases are other spellings of key names.
var keyAliases = map[string]string{
	"esc": "Escape", "return": "Enter", "del": "Delete", "space": " ", "spacebar": " ",
	"up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft", "right": "ArrowRight",
	"plus": "+", "ctrl": "Control", "cmd": "Meta", "command": "Meta", "option": "Alt",
}

// namedKeys maps the lower-case DOM key names of kb (Enter, ArrowLeft, F5...)
// to their keys.
var namedKeys = func() map[string]*kb.Key {
	m := map[string]*kb.Key{}
	runes := make([]rune, 0, len(kb.Keys))
	for r := range kb.Keys {
		runes = append(runes, r)
	}
	slices.Sort(runes) // the lowest rune wins a shared name, every run alike
	for _, r := range runes {
		k := kb.Keys[r]
		if utf8.RuneCountInString(k.Key) <= 1 {
			continue
		}
		if _, ok := m[strings.ToLower(k.Key)]; !ok {
			m[strings.ToLower(k.Key)] = k
		}
	}
	return m
}()

// parseKey parses "Enter", "a", "Control+A", "Control++", "Meta+Shift+K".
func parseKey(spec string) (keyCombo, error) {
	if spec == "" {
		return keyCombo{}, errors.New(`the key is empty; give one like "Enter" or "Control+A"`)
	}
	keyName, rest := spec, ""
	switch {
	case spec == "+":
	case strings.HasSuffix(spec, "++"):
		keyName, rest = "+", strings.TrimSuffix(spec, "++")
	default:
		if i := strings.LastIndex(spec, "+"); i >= 0 {
			keyName, rest = spec[i+1:], spec[:i]
		}
	}
	if keyName == "" {
		return keyCombo{}, fmt.Errorf(`%q ends with "+" but names no key; give one like "Control+A"`, spec)
	}
	var c keyCombo
	var bits int64
	if rest != "" {
		for _, m := range strings.Split(rest, "+") {
			name, ok := modifierNames[strings.ToLower(m)]
			if !ok {
				return keyCombo{}, fmt.Errorf(`%q in %q is not a modifier; use Control, Shift, Alt or Meta joined with "+", e.g. "Control+A" or "Control+Shift+K"`, m, spec)
			}
			if bits&modifierBits[name] != 0 {
				continue
			}
			bits |= modifierBits[name]
			c.mods = append(c.mods, namedKeys[strings.ToLower(name)])
		}
	}
	k, err := lookupKey(keyName, spec, bits)
	if err != nil {
		return keyCombo{}, err
	}
	c.key = k
	return c, nil
}

// lookupKey finds the key for a name of spec, given the modifiers held with
// it.
func lookupKey(name, spec string, bits int64) (*kb.Key, error) {
	where := ""
	if spec != name {
		where = fmt.Sprintf(" in %q", spec)
	}
	if a, ok := keyAliases[strings.ToLower(name)]; ok {
		name = a
	}
	if utf8.RuneCountInString(name) == 1 {
		r, _ := utf8.DecodeRuneInString(name)
		// A letter with Shift is the capital; with only Control, Alt or Meta
		// it is the plain key, so that Control+A is not Control+Shift+A.
		if r < utf8.RuneSelf && ('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			switch {
			case bits&modifierBits["Shift"] != 0:
				r = []rune(strings.ToUpper(string(r)))[0]
			case bits != 0:
				r = []rune(strings.ToLower(string(r)))[0]
			}
		}
		if k, ok := kb.Keys[r]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("unknown key %q%s: no keyboard key types it; use type_text to enter such text", name, where)
	}
	if k, ok := namedKeys[strings.ToLower(name)]; ok {
		return k, nil
	}
	return nil, fmt.Errorf(`unknown key %q%s; use a key name such as Enter, Tab, Escape, Backspace, Delete, ArrowLeft, ArrowDown, Home, End, PageDown, F1-F12, Space, or a single character, with modifiers Control, Shift, Alt, Meta joined by "+" (e.g. "Control+A")`, name, where)
}

// events returns the key events of the combination: each modifier goes down
// in order, the key is pressed, and the modifiers come up in reverse order.
// Text is only sent when no Control, Alt or Meta is held, as a keyboard
// would: Control+A selects, it does not type "a".
func (c keyCombo) events() []input.DispatchKeyEventParams {
	var evs []input.DispatchKeyEventParams
	var bits int64
	base := func(k *kb.Key) input.DispatchKeyEventParams {
		return input.DispatchKeyEventParams{Key: k.Key, Code: k.Code, WindowsVirtualKeyCode: k.Windows, NativeVirtualKeyCode: k.Native}
	}
	for _, m := range c.mods {
		bits |= modifierBits[m.Key]
		ev := base(m)
		ev.Type, ev.Modifiers, ev.Location = input.DispatchKeyEventTypeRawKeyDown, bits, 1
		evs = append(evs, ev)
	}
	keyBits := bits
	text := c.key.Text
	if bits&^modifierBits["Shift"] != 0 {
		text = ""
	}
	if c.key.Shift && text != "" {
		keyBits |= modifierBits["Shift"]
	}
	down := base(c.key)
	down.Modifiers = keyBits
	down.Type = input.DispatchKeyEventTypeRawKeyDown
	if text != "" {
		down.Type, down.Text, down.UnmodifiedText = input.DispatchKeyEventTypeKeyDown, text, c.key.Unmodified
	}
	up := base(c.key)
	up.Type, up.Modifiers = input.DispatchKeyEventTypeKeyUp, keyBits
	evs = append(evs, down, up)
	for i := len(c.mods) - 1; i >= 0; i-- {
		m := c.mods[i]
		bits &^= modifierBits[m.Key]
		ev := base(m)
		ev.Type, ev.Modifiers, ev.Location = input.DispatchKeyEventTypeKeyUp, bits, 1
		evs = append(evs, ev)
	}
	return evs
}
