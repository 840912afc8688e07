package remoteobj

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/runtime"
)

func TestRemoteText(t *testing.T) {
	for _, tc := range []struct {
		o    *runtime.RemoteObject
		want string
	}{
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeUndefined}, "undefined"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtypeNull, Value: []byte("null")}, "null"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeNumber, UnserializableValue: "NaN"}, "NaN"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeBigint, UnserializableValue: "10n"}, "10n"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeFunction, Description: "function f() {\n  return 1;\n}"}, "function f() {"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtypeMap, Description: "Map(1)",
			Preview: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeMap, Description: "Map(1)",
				Entries: []*runtime.EntryPreview{{Key: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeString, Description: "k"}, Value: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeNumber, Description: "1"}}}}},
			`Map(1) {"k" => 1}`},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtypeArray, Description: "Array(300)",
			Preview: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeArray, Description: "Array(300)", Overflow: true,
				Properties: []*runtime.PropertyPreview{{Name: "0", Type: runtime.PropertyPreviewTypeString, Value: "a"}}}},
			`["a", …]`},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, ClassName: "Point", Description: "Point",
			Preview: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Point",
				Properties: []*runtime.PropertyPreview{{Name: "x", Type: runtime.PropertyPreviewTypeNumber, Value: "1"}}}},
			`Point {x: 1}`},
	} {
		if got := Text(tc.o, false, 10000); got != tc.want {
			t.Errorf("Text(%s) = %q, want %q", tc.o.Type, got, tc.want)
		}
	}
}

func TestJSONStringPrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{`"short"`, 10, "short"},
		{`"abcdefghijkl"`, 4, "abcd…[cut 8 bytes]"},
		{`"ab\u00e9defghijkl"`, 6, "ab…[cut 15 bytes]"}, // counted in the JSON text
		{`"abc\\\\defghijkl"`, 5, `abc\…[cut 11 bytes]`},
		{`"abc\ndefghijkl"`, 4, "abc…[cut 11 bytes]"},
	} {
		got, ok := JSONStringPrefix([]byte(tc.in), tc.n)
		if !ok || got != tc.want {
			t.Errorf("JSONStringPrefix(%s, %d) = %q, %v; want %q", tc.in, tc.n, got, ok, tc.want)
		}
	}
}

func str(s string) *runtime.RemoteObject {
	v, _ := json.Marshal(s)
	return &runtime.RemoteObject{Type: runtime.RemoteObjectTypeString, Value: v}
}

func num(s string) *runtime.RemoteObject {
	return &runtime.RemoteObject{Type: runtime.RemoteObjectTypeNumber, Value: []byte(s), Description: s}
}

func object(p *runtime.ObjectPreview) *runtime.RemoteObject {
	return &runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtype(p.Subtype), Description: p.Description, Preview: p}
}

func TestTextEdges(t *testing.T) {
	errObj := &runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtypeError, Description: "TypeError: x is undefined\n    at f (http://h/a.js:1:2)"}
	nested := &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Object", Properties: []*runtime.PropertyPreview{
		{Name: "a", Type: runtime.PropertyPreviewTypeObject, ValuePreview: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Object",
			Properties: []*runtime.PropertyPreview{{Name: "b", Type: runtime.PropertyPreviewTypeString, Value: "x\"y"}}}},
		{Name: "g", Type: runtime.PropertyPreviewTypeAccessor},
		{Name: "n", Type: runtime.PropertyPreviewTypeObject, Subtype: runtime.PropertyPreviewSubtypeNull, Value: "null"},
	}}
	deep := &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Object"}
	for i := 0; i < 6; i++ {
		deep = &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Object",
			Properties: []*runtime.PropertyPreview{{Name: "d", Type: runtime.PropertyPreviewTypeObject, ValuePreview: deep}}}
	}
	for _, tc := range []struct {
		name string
		o    *runtime.RemoteObject
		full bool
		n    int
		want string
	}{
		{"nil", nil, false, 100, ""},
		{"string", str("héllo"), false, 100, "héllo"},
		{"long string cut while decoding", str(strings.Repeat("x", 50)), false, 10, "xxxxxxxxxx…[cut 40 bytes]"},
		{"string without a value", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeString, Description: "desc"}, false, 100, "desc"},
		{"number", num("42"), false, 100, "42"},
		{"number from its description", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeNumber, Description: "7"}, false, 100, "7"},
		{"-0", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeNumber, UnserializableValue: "-0"}, false, 100, "-0"},
		{"boolean", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeBoolean, Value: []byte("true")}, false, 100, "true"},
		{"error, first line", errObj, false, 100, "TypeError: x is undefined"},
		{"error, full", errObj, true, 100, errObj.Description},
		{"function, full", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeFunction, Description: "function f() {\n}"}, true, 100, "function f() {\n}"},
		{"symbol", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeSymbol, Description: "Symbol(s)"}, false, 100, "Symbol(s)"},
		{"object without preview", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, ClassName: "Window", Description: "Window"}, false, 100, "Window"},
		{"object by value", &runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Value: []byte(`{"a":1}`)}, false, 100, `{"a":1}`},
		{"nested object, getter, null", object(nested), false, 100, `{a: {b: "x\"y"}, g: (getter), n: null}`},
		{"deep nesting stops at a description", object(deep), false, 100, "{d: {d: {d: {d: Object}}}}"},
		{"typed array", object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeTypedarray, Description: "Uint8Array(2)",
			Properties: []*runtime.PropertyPreview{{Name: "0", Type: runtime.PropertyPreviewTypeNumber, Value: "1"}, {Name: "1", Type: runtime.PropertyPreviewTypeNumber, Value: "2"}}}),
			false, 100, "Uint8Array [1, 2]"},
		{"array with a named property", object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeArray, Description: "Array(1)",
			Properties: []*runtime.PropertyPreview{{Name: "0", Type: runtime.PropertyPreviewTypeNumber, Value: "1"}, {Name: "extra", Type: runtime.PropertyPreviewTypeBoolean, Value: "true"}}}),
			false, 100, "[1, extra: true]"},
		{"set", object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeSet, Description: "Set(2)", Overflow: true,
			Entries: []*runtime.EntryPreview{{Value: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeString, Description: "a"}}}}),
			false, 100, `Set(2) {"a", …}`},
		{"date", object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeDate, Description: "Mon Jan 01 2024"}), false, 100, "Mon Jan 01 2024"},
		{"class instance", object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Point", Overflow: true}), false, 100, "Point {…}"},
	} {
		if got := Text(tc.o, tc.full, tc.n); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestConsoleArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []*runtime.RemoteObject
		n    int
		want string
	}{
		{"none", nil, 100, ""},
		{"plain values", []*runtime.RemoteObject{num("1"), str("two")}, 100, "1 two"},
		{"a first string is a format", []*runtime.RemoteObject{str("%s has %d items (%i) at %f%%"), str("cart"), num("3.7"), num("-2.2"), num("1.50")}, 100, "cart has 3 items (-2) at 1.5%"},
		{"%d of a non-number", []*runtime.RemoteObject{str("%d|%f"), str("x"), str("y")}, 100, "NaN|NaN"},
		{"%c styles are dropped", []*runtime.RemoteObject{str("%cred%c plain"), str("color: red"), str("")}, 100, "red plain"},
		{"%o and %O", []*runtime.RemoteObject{str("%o/%O"), num("1"), num("2")}, 100, "1/2"},
		{"verbs without arguments stay", []*runtime.RemoteObject{str("%s and %d")}, 100, "%s and %d"},
		{"unknown verbs and a trailing %", []*runtime.RemoteObject{str("%x 100%"), num("5")}, 100, "%x 100% 5"},
		{"left-over arguments follow", []*runtime.RemoteObject{str("a=%s"), num("1"), num("2")}, 100, "a=1 2"},
		{"a first non-string is no format", []*runtime.RemoteObject{num("1"), str("%s")}, 100, "1 %s"},
		{"the output stops past n", []*runtime.RemoteObject{num("11111"), num("22222"), num("33333")}, 8, "11111 22222"},
	} {
		if got := ConsoleArgs(tc.args, tc.n); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestKindPlainAndCutMarker(t *testing.T) {
	if k := Kind(&runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtypeArray}); k != "array" {
		t.Errorf("Kind of an array = %q", k)
	}
	if k := Kind(num("1")); k != "number" {
		t.Errorf("Kind of a number = %q", k)
	}
	for _, tc := range []struct {
		o    *runtime.RemoteObject
		want string
	}{
		{nil, ""},
		{str("hi"), "hi"},
		{num("3"), "3"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeNumber, UnserializableValue: "Infinity"}, "Infinity"},
		{object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeArray, Overflow: true,
			Properties: []*runtime.PropertyPreview{{Name: "0", Value: "1"}, {Name: "1", Value: "2"}}}), "[0: 1, 1: 2, …]"},
		{object(&runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Properties: []*runtime.PropertyPreview{{Name: "a", Value: "1"}}}), "{a: 1}"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeFunction, Description: "function f() {}"}, "function f() {}"},
		{&runtime.RemoteObject{Type: runtime.RemoteObjectTypeUndefined}, "undefined"},
	} {
		if got := Plain(tc.o); got != tc.want {
			t.Errorf("Plain = %q, want %q", got, tc.want)
		}
	}
	for n, want := range map[int]string{0: "…[cut 0 bytes]", 999: "…[cut 999 bytes]", 1000: "…[cut 1,000 bytes]", 9812: "…[cut 9,812 bytes]", 1234567: "…[cut 1,234,567 bytes]"} {
		if got := CutMarker(n); got != want {
			t.Errorf("CutMarker(%d) = %q, want %q", n, got, want)
		}
	}
}
