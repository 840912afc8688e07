// Package keys turns the key names of press_key and the text of type_text
// into the key events of a US keyboard (chromedp's kb), without a browser.
package keys

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp/kb"
)

// Step is one part of typing a text: Insert is text that no key types,
// inserted at once; otherwise Events are the key events of one character.
type Step struct {
	Insert string
	Events []*input.DispatchKeyEventParams
}

// Type returns the steps that type text: key events where a key makes the
// character, so that key handlers of the page run, and insertions of the
// other characters, each run of them at once. A newline is typed as Enter.
func Type(text string) []Step {
	var steps []Step
	var other []rune
	flush := func() {
		if len(other) > 0 {
			steps = append(steps, Step{Insert: string(other)})
			other = other[:0]
		}
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
		flush()
		steps = append(steps, Step{Events: kb.Encode(r)})
	}
	flush()
	return steps
}

// Combo is a parsed key combination: modifier keys held around one key.
type Combo struct {
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

// Parse parses a key or a combination: "Enter", "a", "Control+A",
// "Control++", "Meta+Shift+K". Names are case-insensitive and have aliases
// (Esc, Return, Space, Up, Ctrl, Cmd, Option...). An error says what is
// wrong and shows a valid key.
func Parse(spec string) (Combo, error) {
	if spec == "" {
		return Combo{}, errors.New(`the key is empty; give one like "Enter" or "Control+A"`)
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
		return Combo{}, fmt.Errorf(`%q ends with "+" but names no key; give one like "Control+A"`, spec)
	}
	var c Combo
	var bits int64
	if rest != "" {
		for _, m := range strings.Split(rest, "+") {
			name, ok := modifierNames[strings.ToLower(m)]
			if !ok {
				return Combo{}, fmt.Errorf(`%q in %q is not a modifier; use Control, Shift, Alt or Meta joined with "+", e.g. "Control+A" or "Control+Shift+K"`, m, spec)
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
		return Combo{}, err
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

// Events returns the key events of the combination: each modifier goes
// down in order, the key is pressed, and the modifiers come up in reverse
// order. Text is only sent when no Control, Alt or Meta is held, as a
// keyboard would: Control+A selects, it does not type "a".
func (c Combo) Events() []input.DispatchKeyEventParams {
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
