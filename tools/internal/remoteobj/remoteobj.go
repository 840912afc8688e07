// Package remoteobj renders the remote objects of the DevTools protocol
// (console arguments, exceptions, evaluation results) as text, the way
// DevTools abbreviates them, from what an event carries and without asking
// the page.
package remoteobj

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/chromedp/cdproto/runtime"
)

// Kind names the kind of o: its subtype (array, null, error...) or else
// its type.
func Kind(o *runtime.RemoteObject) string {
	if o.Subtype != "" {
		return string(o.Subtype)
	}
	return string(o.Type)
}

// ConsoleArgs renders the arguments of a console call as DevTools prints
// them: a first string argument is a format with %s, %d, %i, %f, %o, %O
// and %c; the other arguments follow, separated by spaces. Each argument
// is rendered as Text with n, and the result stops growing past n bytes.
func ConsoleArgs(args []*runtime.RemoteObject, n int) string {
	if len(args) == 0 {
		return ""
	}
	var b strings.Builder
	rest := args
	if args[0].Type == runtime.RemoteObjectTypeString {
		format := Text(args[0], false, n)
		rest = args[1:]
		for i := 0; i < len(format); i++ {
			ch := format[i]
			if ch != '%' || i+1 >= len(format) {
				b.WriteByte(ch)
				continue
			}
			verb := format[i+1]
			if verb == '%' {
				b.WriteByte('%')
				i++
				continue
			}
			if !strings.ContainsRune("sdifoOc", rune(verb)) || len(rest) == 0 {
				b.WriteByte(ch)
				continue
			}
			a := rest[0]
			rest = rest[1:]
			i++
			switch verb {
			case 'c': // CSS styling has no text
			case 'd', 'i':
				f, err := strconv.ParseFloat(Text(a, false, n), 64)
				if err != nil {
					b.WriteString("NaN")
				} else {
					b.WriteString(strconv.FormatInt(int64(f), 10))
				}
			case 'f':
				f, err := strconv.ParseFloat(Text(a, false, n), 64)
				if err != nil {
					b.WriteString("NaN")
				} else {
					b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
				}
			default:
				b.WriteString(Text(a, false, n))
			}
			if b.Len() > n {
				return b.String()
			}
		}
	}
	for _, a := range rest {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Text(a, false, n))
		if b.Len() > n {
			break
		}
	}
	return b.String()
}

// Text renders a value of the page from what the event carries, without
// asking the page: primitives as they are, objects from their preview.
// full keeps the whole description of errors (with their stack) and
// functions; otherwise only its first line. A string is decoded up to
// about n bytes, and the cut marked (CutMarker).
func Text(o *runtime.RemoteObject, full bool, n int) string {
	if o == nil {
		return ""
	}
	if o.UnserializableValue != "" {
		return string(o.UnserializableValue)
	}
	switch o.Type {
	case runtime.RemoteObjectTypeString:
		if s, ok := JSONStringPrefix(o.Value, n); ok {
			return s
		}
		return o.Description
	case runtime.RemoteObjectTypeUndefined:
		return "undefined"
	case runtime.RemoteObjectTypeNumber, runtime.RemoteObjectTypeBoolean, runtime.RemoteObjectTypeBigint:
		if len(o.Value) > 0 {
			return string(o.Value)
		}
		return o.Description
	case runtime.RemoteObjectTypeObject:
		switch o.Subtype {
		case runtime.RemoteObjectSubtypeNull:
			return "null"
		case runtime.RemoteObjectSubtypeError:
			if full {
				return o.Description
			}
			first, _, _ := strings.Cut(o.Description, "\n")
			return first
		}
		if o.Preview != nil {
			return previewText(o.Preview, 0)
		}
		if len(o.Value) > 0 {
			return string(o.Value)
		}
		return o.Description
	default: // function, symbol
		if !full {
			first, _, _ := strings.Cut(o.Description, "\n")
			return first
		}
		return o.Description
	}
}

// JSONStringPrefix decodes the JSON string v, or only its first n bytes or
// so when it is longer, marking the cut: a page may log megabytes, and the
// listener must not spend its time decoding what is cut anyway.
func JSONStringPrefix(v []byte, n int) (string, bool) {
	clipped, orig := false, v
	if len(v) > n+2 {
		cut := n + 1
		// Do not cut an escape in two: back up to the backslash that starts
		// the last escape when it is within reach of the cut.
		for i := cut - 1; i >= max(cut-6, 1); i-- {
			if v[i] != '\\' {
				continue
			}
			j := i
			for j > 0 && v[j-1] == '\\' {
				j--
			}
			if (i-j)%2 == 0 { // v[i] starts an escape
				cut = i
			}
			break
		}
		v = append(v[:cut:cut], '"')
		clipped = true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	if clipped {
		// What was cut, counted in the JSON text: exact unless it has
		// escapes.
		s += CutMarker(len(orig) - len(v))
	}
	return s, true
}

// previewText renders an object preview the way DevTools abbreviates it:
// {a: 1, b: "x"}, [1, 2], Map(1) {"k" => 1}.
func previewText(p *runtime.ObjectPreview, depth int) string {
	if depth > 3 {
		return p.Description
	}
	switch p.Subtype {
	case runtime.ObjectPreviewSubtypeNull:
		return "null"
	case runtime.ObjectPreviewSubtypeNode, runtime.ObjectPreviewSubtypeRegexp, runtime.ObjectPreviewSubtypeDate,
		runtime.ObjectPreviewSubtypeError, runtime.ObjectPreviewSubtypePromise:
		return p.Description
	}
	if p.Type != runtime.ObjectPreviewTypeObject {
		return p.Description
	}
	var parts []string
	switch p.Subtype {
	case runtime.ObjectPreviewSubtypeArray, runtime.ObjectPreviewSubtypeTypedarray:
		for _, pp := range p.Properties {
			if _, err := strconv.Atoi(pp.Name); err == nil {
				parts = append(parts, propertyText(pp, depth))
			} else {
				parts = append(parts, pp.Name+": "+propertyText(pp, depth))
			}
		}
		return withOverflow("[", parts, p.Overflow, "]", prefixOf(p.Description, "Array"))
	case runtime.ObjectPreviewSubtypeMap, runtime.ObjectPreviewSubtypeSet, runtime.ObjectPreviewSubtypeWeakmap, runtime.ObjectPreviewSubtypeWeakset:
		for _, en := range p.Entries {
			v := previewText(en.Value, depth+1)
			if en.Value != nil && en.Value.Type == runtime.ObjectPreviewTypeString {
				v = strconv.Quote(en.Value.Description)
			}
			if en.Key != nil {
				k := previewText(en.Key, depth+1)
				if en.Key.Type == runtime.ObjectPreviewTypeString {
					k = strconv.Quote(en.Key.Description)
				}
				v = k + " => " + v
			}
			parts = append(parts, v)
		}
		return p.Description + " " + withOverflow("{", parts, p.Overflow, "}", "")
	}
	for _, pp := range p.Properties {
		parts = append(parts, pp.Name+": "+propertyText(pp, depth))
	}
	prefix := ""
	if p.Description != "Object" {
		prefix = p.Description + " "
	}
	return withOverflow(prefix+"{", parts, p.Overflow, "}", "")
}

// prefixOf returns the description of an array-like preview worth showing
// before its items: a typed array's class, not "Array(3)".
func prefixOf(desc, plain string) string {
	if strings.HasPrefix(desc, plain+"(") {
		return ""
	}
	name, _, _ := strings.Cut(desc, "(")
	return name + " "
}

func withOverflow(open string, parts []string, overflow bool, close, prefix string) string {
	if overflow {
		parts = append(parts, "…")
	}
	return prefix + open + strings.Join(parts, ", ") + close
}

func propertyText(pp *runtime.PropertyPreview, depth int) string {
	switch {
	case pp.ValuePreview != nil:
		return previewText(pp.ValuePreview, depth+1)
	case pp.Type == runtime.PropertyPreviewTypeString:
		return strconv.Quote(pp.Value)
	case pp.Type == runtime.PropertyPreviewTypeAccessor:
		return "(getter)"
	default:
		return pp.Value
	}
}

// Plain renders a console argument the short way the console shows it:
// a string as it is, another value as its JSON, an object as its flat
// preview ({a: 1, b: 2}, [1, 2]), else its description or type.
func Plain(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if len(o.Value) > 0 {
		var s string
		if json.Unmarshal(o.Value, &s) == nil {
			return s
		}
		return string(o.Value)
	}
	if o.UnserializableValue != "" {
		return string(o.UnserializableValue)
	}
	if o.Preview != nil && len(o.Preview.Properties) > 0 {
		props := make([]string, 0, len(o.Preview.Properties))
		for _, p := range o.Preview.Properties {
			props = append(props, p.Name+": "+p.Value)
		}
		more := ""
		if o.Preview.Overflow {
			more = ", …"
		}
		if o.Subtype == "array" {
			return "[" + strings.Join(props, ", ") + more + "]"
		}
		return "{" + strings.Join(props, ", ") + more + "}"
	}
	if o.Description != "" {
		return o.Description
	}
	return string(o.Type)
}

// CutMarker is what ends a text that was cut, saying how many bytes were:
// "…[cut 9,812 bytes]".
func CutMarker(n int) string {
	return "…[cut " + groupDigits(n) + " bytes]"
}

// groupDigits writes n with thousands separators: 9812 -> "9,812".
func groupDigits(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
