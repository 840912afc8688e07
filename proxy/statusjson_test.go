package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// TestUserStatusJSONAsEncoded: the status answer written by appendJSON has
// the bytes and the headers of echo's c.JSON (encoding/json), for answers
// it writes itself (escaped strings among them: a browser's error quotes
// its URL) and for those it leaves to encoding/json (a tunnel, strings
// that are not ASCII, a year past 9999).
func TestUserStatusJSONAsEncoded(t *testing.T) {
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	local := time.Date(2026, 12, 7, 13, 4, 5, 120000000, time.FixedZone("X", 5*3600+1800))
	mono := time.Now() // with a monotonic reading, as UserStats gives
	farFuture := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []UserStatus{
		{},
		{UserID: "u0", BrowserURL: "http://127.0.0.1:9", BrowserStatus: "disconnected"},
		{UserID: "alice", BrowserURL: "ws://host:9222/devtools/browser/abc", BrowserStatus: "connected", ActiveSessions: 50, LastActivity: at("2026-12-07T13:04:05.123456789Z")},
		{UserID: "bob", BrowserURL: "managed", BrowserStatus: "disconnected", Managed: true, ActiveSessions: -1},
		{UserID: "carol", BrowserURL: "http://h", BrowserStatus: "failed", BrowserError: "dial tcp 127.0.0.1:9: connect: connection refused", LastActivity: &local},
		{UserID: "dave", BrowserURL: "http://h", BrowserStatus: "connected", LastActivity: &mono},
		{UserID: "eve", BrowserURL: "tunnel://eve", BrowserStatus: "connected", Tunnel: &TunnelStatus{Connected: true, AgentVersion: "1.2"}},
		// Strings encoding/json escapes.
		{UserID: `q"uote`, BrowserURL: `back\slash`, BrowserStatus: "x"},
		{UserID: "u", BrowserURL: "http://h/?a=1&b=<2>", BrowserStatus: "x"},
		{UserID: "u", BrowserURL: "http://h", BrowserStatus: "x", BrowserError: "line\nbreak\ttab\x01"},
		{UserID: "u", BrowserURL: "http://h", BrowserStatus: "failed", BrowserError: `Get "http://127.0.0.1:9/json/version": dial tcp 127.0.0.1:9: connect: connection refused`},
		{UserID: "u", BrowserURL: "http://h", BrowserStatus: "x", BrowserError: "\b\f\r\x1f\x7f\x00 end\\"},
		{UserID: "ünï", BrowserURL: "http://h/\u2028", BrowserStatus: "x", BrowserError: "bad \xff utf-8"},
		{UserID: "u", BrowserURL: "http://h", BrowserStatus: "x", LastActivity: &farFuture},
	}
	e := echo.New()
	serve := func(target string, h func(c echo.Context) error) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, target, nil), w)
		if err := h(c); err != nil {
			e.DefaultHTTPErrorHandler(err, c)
		}
		return w
	}
	var fast int
	for i, u := range cases {
		for _, target := range []string{"/", "/?pretty"} {
			want := serve(target, func(c echo.Context) error { return c.JSON(http.StatusOK, u) })
			got := serve(target, func(c echo.Context) error { return writeStatus(c, http.StatusOK, &u) })
			if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
				t.Errorf("case %d %s:\n got %d %v %q\nwant %d %v %q", i, target, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
			if target != "/" && want.Code == http.StatusOK && !strings.Contains(got.Body.String(), "\n  \"userId\"") {
				t.Errorf("case %d %s: not indented: %q", i, target, got.Body)
			}
		}
		if _, ok := u.appendJSON(nil); ok {
			fast++
		}
	}
	// Every ASCII byte, escaped as encoding/json escapes it.
	for c := range 128 {
		v := "a" + string(rune(c)) + "b"
		want, _ := json.Marshal(v)
		if got, ok := appendJSONString(nil, v); !ok || string(got) != string(want) {
			t.Errorf("%q: %s, want %s", v, got, want)
		}
	}
	if fast < len(cases)-4 {
		t.Errorf("only %d of %d answers written by appendJSON", fast, len(cases))
	}
}

// BenchmarkUserStatusJSON: the status answer's encoding, appendJSON
// against encoding/json.
func BenchmarkUserStatusJSON(b *testing.B) {
	last := time.Now()
	u := UserStatus{UserID: "u0", BrowserURL: "http://127.0.0.1:9", BrowserStatus: "disconnected", ActiveSessions: 50, LastActivity: &last}
	e := echo.New()
	for _, bc := range []struct {
		name string
		h    func(c echo.Context) error
	}{
		{"appendJSON", func(c echo.Context) error { return writeStatus(c, http.StatusOK, &u) }},
		{"encoding-json", func(c echo.Context) error { return c.JSON(http.StatusOK, u) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				c := e.NewContext(req, httptest.NewRecorder())
				_ = bc.h(c)
			}
		})
	}
}
