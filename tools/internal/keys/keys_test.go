package keys

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
)

// keyEvent is the part of a key event the tests check.
type keyEvent struct {
	typ       input.DispatchKeyEventType
	key, code string
	vk        int64
	mods      int64
	text      string
}

func summarize(evs []input.DispatchKeyEventParams) []keyEvent {
	out := make([]keyEvent, len(evs))
	for i, e := range evs {
		out[i] = keyEvent{e.Type, e.Key, e.Code, e.WindowsVirtualKeyCode, e.Modifiers, e.Text}
	}
	return out
}

func TestParseKey(t *testing.T) {
	const (
		raw  = input.DispatchKeyEventTypeRawKeyDown
		down = input.DispatchKeyEventTypeKeyDown
		up   = input.DispatchKeyEventTypeKeyUp
	)
	for _, tc := range []struct {
		spec string
		want []keyEvent
	}{
		{"Enter", []keyEvent{{down, "Enter", "Enter", 13, 0, "\r"}, {up, "Enter", "Enter", 13, 0, ""}}},
		{"enter", []keyEvent{{down, "Enter", "Enter", 13, 0, "\r"}, {up, "Enter", "Enter", 13, 0, ""}}},
		{"Tab", []keyEvent{{raw, "Tab", "Tab", 9, 0, ""}, {up, "Tab", "Tab", 9, 0, ""}}},
		{"a", []keyEvent{{down, "a", "KeyA", 65, 0, "a"}, {up, "a", "KeyA", 65, 0, ""}}},
		// A capital alone types the capital, with Shift as a keyboard would.
		{"A", []keyEvent{{down, "A", "KeyA", 65, 8, "A"}, {up, "A", "KeyA", 65, 8, ""}}},
		// Control+A is Control and the A key: no Shift, and no text to type.
		{"Control+A", []keyEvent{
			{raw, "Control", "ControlLeft", 162, 2, ""},
			{raw, "a", "KeyA", 65, 2, ""},
			{up, "a", "KeyA", 65, 2, ""},
			{up, "Control", "ControlLeft", 162, 0, ""},
		}},
		{"ctrl+a", []keyEvent{
			{raw, "Control", "ControlLeft", 162, 2, ""},
			{raw, "a", "KeyA", 65, 2, ""},
			{up, "a", "KeyA", 65, 2, ""},
			{up, "Control", "ControlLeft", 162, 0, ""},
		}},
		{"Shift+ArrowLeft", []keyEvent{
			{raw, "Shift", "ShiftLeft", 160, 8, ""},
			{raw, "ArrowLeft", "ArrowLeft", 37, 8, ""},
			{up, "ArrowLeft", "ArrowLeft", 37, 8, ""},
			{up, "Shift", "ShiftLeft", 160, 0, ""},
		}},
		{"Shift+a", []keyEvent{
			{raw, "Shift", "ShiftLeft", 160, 8, ""},
			{down, "A", "KeyA", 65, 8, "A"},
			{up, "A", "KeyA", 65, 8, ""},
			{up, "Shift", "ShiftLeft", 160, 0, ""},
		}},
		{"Meta+Shift+K", []keyEvent{
			{raw, "Meta", "MetaLeft", 91, 4, ""},
			{raw, "Shift", "ShiftLeft", 160, 12, ""},
			{raw, "K", "KeyK", 75, 12, ""},
			{up, "K", "KeyK", 75, 12, ""},
			{up, "Shift", "ShiftLeft", 160, 4, ""},
			{up, "Meta", "MetaLeft", 91, 0, ""},
		}},
		{"Control++", []keyEvent{
			{raw, "Control", "ControlLeft", 162, 2, ""},
			{raw, "+", "Equal", 187, 2, ""},
			{up, "+", "Equal", 187, 2, ""},
			{up, "Control", "ControlLeft", 162, 0, ""},
		}},
		{"+", []keyEvent{{down, "+", "Equal", 187, 8, "+"}, {up, "+", "Equal", 187, 8, ""}}},
		{"Esc", []keyEvent{{raw, "Escape", "Escape", 27, 0, ""}, {up, "Escape", "Escape", 27, 0, ""}}},
		{"Space", []keyEvent{{down, " ", "Space", 32, 0, " "}, {up, " ", "Space", 32, 0, ""}}},
		{"F5", []keyEvent{{raw, "F5", "F5", 116, 0, ""}, {up, "F5", "F5", 116, 0, ""}}},
	} {
		c, err := Parse(tc.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		if got := summarize(c.Events()); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Parse(%q) events:\n got %v\nwant %v", tc.spec, got, tc.want)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"Foo", `unknown key "Foo"`},
		{"Control+Foo", `unknown key "Foo" in "Control+Foo"`},
		{"Hyper+A", `"Hyper" in "Hyper+A" is not a modifier`},
		{"Control+", `names no key`},
		{"", "empty"},
		{"€", `unknown key "€"`},
	} {
		_, err := Parse(tc.spec)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", tc.spec, err, tc.want)
		}
		// Every error shows the form of a valid key.
		if tc.spec != "€" && !strings.Contains(err.Error(), `"Control+A"`) && !strings.Contains(err.Error(), `"Enter"`) {
			t.Errorf("Parse(%q) = %q gives no example", tc.spec, err)
		}
	}
}

// Spellings that name the same combination give the same events.
func TestParseKeySpellings(t *testing.T) {
	for _, tc := range []struct{ spec, same string }{
		{"Control+Control+a", "Control+A"}, // a modifier given twice is held once
		{"ctrl+Control+A", "Control+A"},
		{"CONTROL+a", "Control+A"},
		{"Cmd+Option+Shift+k", "Meta+Alt+Shift+K"},
		{"Return", "Enter"},
		{"up", "ArrowUp"},
		{"Option+Left", "Alt+ArrowLeft"},
		{"Control+plus", "Control++"},
		{"++", "+"},
		{"plus", "+"},
		{"Spacebar", " "},
		{"f5", "F5"},
		{"DEL", "Delete"},
		{"Meta+Shift+k", "Meta+Shift+K"}, // Shift makes a letter the capital
		{"Alt+A", "Alt+a"},               // without Shift, the plain key
	} {
		a, err := Parse(tc.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		b, err := Parse(tc.same)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.same, err)
		}
		if got, want := summarize(a.Events()), summarize(b.Events()); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Parse(%q) events %v, want those of %q: %v", tc.spec, got, tc.same, want)
		}
	}
}

func TestParseKeyEdgeErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"a+b", `"a" in "a+b" is not a modifier; use Control, Shift, Alt or Meta joined with "+", e.g. "Control+A" or "Control+Shift+K"`},
		{"Control+Shift+", `"Control+Shift+" ends with "+" but names no key; give one like "Control+A"`},
		{"Control++Shift", `"" in "Control++Shift" is not a modifier; use Control, Shift, Alt or Meta joined with "+", e.g. "Control+A" or "Control+Shift+K"`},
		{"Control+é", `unknown key "é" in "Control+é": no keyboard key types it; use type_text to enter such text`},
		{"Bogus", `unknown key "Bogus"; use a key name such as Enter, Tab, Escape, Backspace, Delete, ArrowLeft, ArrowDown, Home, End, PageDown, F1-F12, Space, or a single character, with modifiers Control, Shift, Alt, Meta joined by "+" (e.g. "Control+A")`},
	} {
		_, err := Parse(tc.spec)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q) = %v\nwant %s", tc.spec, err, tc.want)
		}
	}
}

// steps describes typing steps as "key:<Key>" or "insert:<text>".
func steps(ss []Step) string {
	var out []string
	for _, s := range ss {
		if s.Insert != "" {
			out = append(out, "insert:"+s.Insert)
			continue
		}
		if len(s.Events) == 0 {
			out = append(out, "empty")
			continue
		}
		out = append(out, "key:"+s.Events[0].Key)
	}
	return strings.Join(out, " ")
}

func TestType(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", ""},
		{"ab", "key:a key:b"},
		{"A!", "key:A key:!"},
		{"a\nb", "key:a key:Enter key:b"},
		{"a b", "key:a key:  key:b"},
		{"héllo", "key:h insert:é key:l key:l key:o"},
		{"日本語", "insert:日本語"}, // a run of such characters is one insertion
		{"x日本", "key:x insert:日本"},
		// kb maps private-use runes to keys such as ArrowLeft: they are
		// inserted, not pressed.
		{"\u0302", "insert:\u0302"},
		{"é\u0302x", "insert:é\u0302 key:x"},
	} {
		if got := steps(Type(tc.text)); got != tc.want {
			t.Errorf("Type(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
	// A typed character is a key going down, its text, and the key coming up.
	st := Type("a")
	if len(st) != 1 || len(st[0].Events) < 2 || st[0].Events[0].Type != input.DispatchKeyEventTypeKeyDown || st[0].Events[len(st[0].Events)-1].Type != input.DispatchKeyEventTypeKeyUp {
		t.Fatalf("Type(a) = %+v", st)
	}
	text := ""
	for _, ev := range st[0].Events {
		text += ev.Text
	}
	if text != "a" {
		t.Errorf("Type(a) sends the text %q", text)
	}
}
