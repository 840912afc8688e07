package tools

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// TestArgsMatchSchema: each tool's argument struct names exactly the
// parameters of its schema, with a Go type that takes the schema's JSON
// type, so a parameter renamed or added in one place and not the other
// fails here (and the schema itself in TestToolSchemaSnapshots).
func TestArgsMatchSchema(t *testing.T) {
	for _, tl := range All(Config{}) {
		name := tl.Tool.Name
		if tl.Handler.args == nil {
			t.Errorf("%s has no argument struct; make its Handler with bind", name)
			continue
		}
		fields := argFields(tl.Handler.args)
		props := tl.Tool.InputSchema.Properties
		if got, want := slices.Sorted(maps.Keys(fields)), slices.Sorted(maps.Keys(props)); !slices.Equal(got, want) {
			t.Errorf("%s: the argument struct %s has fields %v, the schema parameters %v", name, tl.Handler.args, got, want)
			continue
		}
		for p, ft := range fields {
			schema, _ := props[p].(map[string]any)
			// A jsonArg is checked by the tool itself, whatever the schema says.
			if want := schemaKinds(schema); goKind(ft) != "jsonArg" && !slices.Contains(want, goKind(ft)) {
				t.Errorf("%s: parameter %s is %v in the schema but %s in %s", name, p, schemaTypes(schema), ft, tl.Handler.args)
			}
		}
	}
}

// schemaTypes returns the JSON types a property schema names ("any" for
// a property without a type of its own, such as an anyOf).
func schemaTypes(s map[string]any) []string {
	if typ, ok := s["type"].(string); ok {
		return []string{typ}
	}
	return []string{"any"}
}

// schemaKinds returns the goKinds that can take a property of schema s.
func schemaKinds(s map[string]any) []string {
	var out []string
	for _, typ := range schemaTypes(s) {
		switch typ {
		case "string":
			out = append(out, "string")
		case "number":
			out = append(out, "float", "int")
		case "integer":
			out = append(out, "int")
		case "boolean":
			out = append(out, "bool")
		case "array":
			out = append(out, "slice", "any")
		case "object":
			out = append(out, "map", "any")
		case "any":
			out = append(out, "any")
		}
	}
	return out
}

// goKind classifies an argument field's type the way schemaKinds does.
func goKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[jsonArg]() {
		return "jsonArg"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Float64:
		return "float"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Bool:
		return "bool"
	case reflect.Slice:
		return "slice"
	case reflect.Map:
		return "map"
	case reflect.Interface:
		return "any"
	}
	return t.String()
}

// TestBadArgumentType: an argument of the wrong JSON type is refused with
// INVALID_ARGUMENT, its name, what it must be and what to do, before the
// tool does anything (no workspace is bound here, so any further step
// would fail differently).
func TestBadArgumentType(t *testing.T) {
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"navigate_page", map[string]any{"url": 5.0}, "INVALID_ARGUMENT: navigate_page: url must be a string, not a number; call again with url as a string"},
		{"close_page", map[string]any{"pageId": "two"}, "INVALID_ARGUMENT: close_page: pageId must be a whole number, not a string"},
		{"close_page", map[string]any{"pageId": 2.5}, "INVALID_ARGUMENT: close_page: pageId must be a whole number, not 2.5"},
		{"list_pages", map[string]any{"all": "yes"}, "INVALID_ARGUMENT: list_pages: all must be true or false, not a string"},
		{"click", map[string]any{"uid": 3.0}, "INVALID_ARGUMENT: click: uid must be a string, not a number"},
		{"upload_file", map[string]any{"uid": "1", "filePaths": []any{"a", 1.0}}, "INVALID_ARGUMENT: upload_file: filePaths must be an array of strings, not a number"},
		{"fill", map[string]any{"uid": "1"}, "fill needs a value (a string)"},
		{"fill", map[string]any{"uid": "1", "value": "", "pageId": true}, "INVALID_ARGUMENT: fill: pageId must be a whole number, not true or false"},
		{"new_page", map[string]any{"timeout": true}, "INVALID_ARGUMENT: new_page: timeout must be a number, not true or false"},
	} {
		got, isError := callTool(t, nil, readWrite, tc.tool, tc.args)
		if !isError || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s %v: %q, want it to start with %q", tc.tool, tc.args, got, tc.want)
		}
	}
	tl := All(Config{})[0]
	var req mcp.CallToolRequest
	req.Params.Name = tl.Tool.Name
	req.Params.Arguments = []any{true}
	res, err := guard(tl)(context.Background(), req)
	want := "INVALID_ARGUMENT: " + tl.Tool.Name + ": the arguments must be an object of named arguments, not an array"
	if err != nil || !res.IsError || !strings.HasPrefix(resultText(res), want) {
		t.Errorf("arguments [true]: %v %q, want %q", err, resultText(res), want)
	}
}

// TestArgumentsBindExactNames: only an argument spelled exactly as its
// parameter is bound, as before typed arguments. encoding/json alone
// matches names case-insensitively, so "INITSCRIPT" would reach
// navigate_page's initScript past the browser:script check, which looks
// at the exact name.
func TestArgumentsBindExactNames(t *testing.T) {
	var got navigatePageArgs
	var req mcp.CallToolRequest
	req.Params.Arguments = map[string]any{"INITSCRIPT": "alert(1)", "Url": "http://x.test/", "pageid": 3.0, "type": "reload", "extra": []any{1.0}}
	if err := bindArgs(req, argFields(reflect.TypeFor[navigatePageArgs]()), &got); err != nil {
		t.Fatal(err)
	}
	if want := (navigatePageArgs{Type: "reload"}); got != want {
		t.Errorf("bound %+v, want %+v", got, want)
	}
}

// TestArgumentsLooseNumbers: a number or a boolean given as a string, and
// a boolean as a number, bind as req.GetInt, GetFloat and GetBool read
// them: tests and clients pass ids they read from a tool's text.
func TestArgumentsLooseNumbers(t *testing.T) {
	type args struct {
		pageArg
		Timeout float64 `json:"timeout"`
		All     bool    `json:"all"`
		Size    *int    `json:"size"`
		Verbose bool    `json:"verbose"`
	}
	var got args
	var req mcp.CallToolRequest
	req.Params.Arguments = map[string]any{"pageId": "7", "timeout": "1500.5", "all": "true", "size": "3", "verbose": 1.0}
	if err := bindArgs(req, argFields(reflect.TypeFor[args]()), &got); err != nil {
		t.Fatal(err)
	}
	if got.PageID != 7 || got.Timeout != 1500.5 || !got.All || got.Size == nil || *got.Size != 3 || !got.Verbose {
		t.Errorf("bound %+v", got)
	}
}

// TestJSONArgKeepsNull: a jsonArg tells a null argument from a missing one.
func TestJSONArgKeepsNull(t *testing.T) {
	type args struct {
		A jsonArg `json:"a"`
		B jsonArg `json:"b"`
		C jsonArg `json:"c"`
	}
	var got args
	var req mcp.CallToolRequest
	req.Params.Arguments = map[string]any{"a": nil, "b": map[string]any{"x": 1.0}}
	if err := bindArgs(req, argFields(reflect.TypeFor[args]()), &got); err != nil {
		t.Fatal(err)
	}
	if !got.A.Set || got.A.Value != nil || !got.B.Set || !reflect.DeepEqual(got.B.Value, map[string]any{"x": 1.0}) || got.C.Set {
		t.Errorf("bound %+v", got)
	}
}

// pagingOf binds args as a list tool binds its paging arguments.
func pagingOf(t *testing.T, args map[string]any) pagingArgs {
	t.Helper()
	var p pagingArgs
	var req mcp.CallToolRequest
	req.Params.Arguments = args
	if err := bindArgs(req, argFields(reflect.TypeFor[pagingArgs]()), &p); err != nil {
		t.Fatal(err)
	}
	return p
}
