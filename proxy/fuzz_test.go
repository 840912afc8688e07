package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// FuzzRegisterBody decodes a POST /api/register body as the handler does and
// validates it: nothing panics, a refusal is a 400 with an input code, and
// an accepted request is valid (its user ID and browser URL pass validation
// as they are, its metadata is within bounds) and validates to itself.
func FuzzRegisterBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req RegisterRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			_ = jsonProblem(err)
			return
		}
		out, aerr := ValidateRegister(req)
		if aerr != nil {
			switch {
			case aerr.Status != http.StatusBadRequest:
				t.Fatalf("refusal with status %d", aerr.Status)
			case aerr.Code != CodeInvalidUserID && aerr.Code != CodeInvalidBrowserURL && aerr.Code != CodeInvalidRequest:
				t.Fatalf("refusal with code %s", aerr.Code)
			case aerr.Message == "":
				t.Fatal("refusal without a message")
			}
			return
		}
		if err := auth.ValidateUserID(out.UserID); err != nil {
			t.Fatalf("accepted user ID %q: %v", out.UserID, err)
		}
		if u, err := router.ValidateBrowserURL(out.BrowserURL); err != nil || u != out.BrowserURL {
			t.Fatalf("accepted browser URL %q validates to %q, %v", out.BrowserURL, u, err)
		}
		if len(out.Metadata) > maxMetadata {
			t.Fatalf("accepted %d metadata keys", len(out.Metadata))
		}
		for k, v := range out.Metadata {
			if k == "" || len(k) > 64 || len(v) > 256 {
				t.Fatalf("accepted metadata %q: %q", k, v)
			}
		}
		again, aerr := ValidateRegister(out)
		if aerr != nil {
			t.Fatalf("accepted request %+v is refused when validated again: %v", out, aerr)
		}
		if !reflect.DeepEqual(again, out) {
			t.Fatalf("validating %+v again gives %+v", out, again)
		}
	})
}
