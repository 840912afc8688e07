package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Every tool decodes its arguments once, into a struct of its own whose
// json names are the tool's parameter names: the schema says them again
// (with descriptions, enums and bounds, which a struct tag cannot say in
// the shape the snapshots keep), and TestArgsMatchSchema fails when the
// two name different parameters or types.

// Handler answers a call of a tool. bind makes one from a function of the
// tool's argument struct.
type Handler struct {
	call server.ToolHandlerFunc
	// args is the argument struct, for TestArgsMatchSchema.
	args reflect.Type
}

// bind returns the Handler that decodes a call's arguments into an A and
// passes them to fn. Arguments that are not the exact json name of a
// field of A are dropped, as req.GetString and the like did: encoding/json
// would otherwise match names case-insensitively, and an argument that
// needs a permission of its own (ArgPerms, checked on the exact name)
// could slip in as "INITSCRIPT". An argument of the wrong type is an
// INVALID_ARGUMENT error before fn runs, so it changes nothing.
func bind[A any](fn mcp.TypedToolHandlerFunc[A]) Handler {
	typ := reflect.TypeFor[A]()
	fields := argFields(typ)
	return Handler{args: typ, call: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var a A
		if err := bindArgs(req, fields, &a); err != nil {
			return nil, err
		}
		return fn(ctx, req, a)
	}}
}

// noArgs is the argument struct of a tool without parameters.
type noArgs struct{}

// pageArg is the pageId parameter of the tools that work on one page;
// argument structs embed it.
type pageArg struct {
	PageID int `json:"pageId"`
}

// jsonArg is an argument that the tool checks itself because it takes
// several forms, or because null means something else than leaving it out
// (emulate's geolocation: null clears it). Value is the argument as JSON
// decodes it into an any.
type jsonArg struct {
	// Set says the argument was given, null included.
	Set   bool
	Value any
}

// UnmarshalJSON keeps v, and that it was given: encoding/json calls it for
// null too.
func (a *jsonArg) UnmarshalJSON(b []byte) error {
	a.Set = true
	return json.Unmarshal(b, &a.Value)
}

// argFields returns the parameters of an argument struct by json name,
// with the fields of embedded structs (pageArg) as their own.
func argFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for name, ft := range argFields(f.Type) {
				out[name] = ft
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// bindArgs decodes the arguments of req that are parameters (fields) into
// target, with mcp-go's binding.
func bindArgs(req mcp.CallToolRequest, fields map[string]reflect.Type, target any) error {
	raw := req.Params.Arguments
	if b, ok := raw.(json.RawMessage); ok {
		raw = nil
		if err := json.Unmarshal(b, &raw); err != nil {
			return invalidArgf("the arguments are not JSON; send them as an object of named arguments")
		}
	}
	args, ok := raw.(map[string]any)
	if !ok && raw != nil {
		return invalidArgf("the arguments must be an object of named arguments, not %s; call again with an object, as the input schema says", jsonKind(raw))
	}
	kept := make(map[string]any, len(args))
	for k, v := range args {
		if ft, ok := fields[k]; ok {
			kept[k] = loosen(v, ft)
		}
	}
	var only mcp.CallToolRequest
	only.Params.Arguments = kept
	err := only.BindArguments(target)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// Field is the path of Go names of embedded structs, then json
		// names: "elementArgs.pageArg.pageId".
		name, want := te.Field, "of another type"
		for _, part := range strings.Split(te.Field, ".") {
			if ft, ok := fields[part]; ok {
				name, want = part, describeType(ft)
				break
			}
		}
		return invalidArgf("%s must be %s, not %s; call again with %s as %s, as the input schema says",
			name, want, describeJSON(te.Value), name, want)
	}
	return invalidArgf("the arguments do not fit the input schema (%v); call again with arguments as the input schema says", err)
}

// loosen converts v to the JSON type of a number or boolean field t where
// req.GetInt, GetFloat and GetBool did: a number or a boolean given as a
// string ("2", "true"), and a boolean given as a number. Clients, and
// models, send ids they read from a tool's text as strings.
func loosen(v any, t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s, isStr := v.(string)
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		if i, err := strconv.Atoi(s); isStr && err == nil {
			return i
		}
	case reflect.Float64:
		if f, err := strconv.ParseFloat(s, 64); isStr && err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
	case reflect.Bool:
		if b, err := strconv.ParseBool(s); isStr && err == nil {
			return b
		}
		if f, ok := v.(float64); ok {
			return f != 0
		}
	}
	return v
}

// describeType says what JSON a Go argument type takes.
func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		switch t.Elem().Kind() {
		case reflect.String:
			return "an array of strings"
		case reflect.Int, reflect.Int64, reflect.Float64:
			return "an array of numbers"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "of another type"
}

// describeJSON says what an encoding/json UnmarshalTypeError's Value was.
func describeJSON(v string) string {
	switch {
	case v == "bool":
		return "true or false"
	case v == "array", v == "object":
		return "an " + v
	case strings.HasPrefix(v, "number "):
		return strings.TrimPrefix(v, "number ")
	}
	return "a " + v
}

// jsonKind names the JSON type of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// invalidArgf returns an error said as "INVALID_ARGUMENT: <tool>: <message>".
func invalidArgf(format string, args ...any) error {
	return &toolError{code: "INVALID_ARGUMENT", sep: ": ", msg: fmt.Sprintf(format, args...)}
}
