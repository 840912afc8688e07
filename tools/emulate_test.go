package tools

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/chromedp/cdproto/network"
)

func TestParseEmulation(t *testing.T) {
	c, err := parseEmulationOf(t, map[string]any{
		"networkConditions": "Slow 3G",
		"cpuThrottlingRate": 4.0,
		"geolocation":       map[string]any{"latitude": 1.5, "longitude": -2.0},
		"userAgent":         "",
		"colorScheme":       "auto",
		"viewport":          map[string]any{"width": 320.0, "height": 480, "isLandscape": false, "isMobile": true},
		"extraHttpHeaders":  map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.network == nil || *c.network != "Slow 3G", c.cpuRate == nil || *c.cpuRate != 4:
		t.Errorf("network/cpu: %+v", c)
	case !c.setGeo || c.geo == nil || c.geo.latitude != 1.5 || c.geo.longitude != -2 || c.geo.accuracy != 0:
		t.Errorf("geo: %+v", c.geo)
	case c.userAgent == nil || *c.userAgent != "", c.colorScheme == nil || *c.colorScheme != "":
		t.Errorf("userAgent/colorScheme reset: %+v", c)
	case !c.setViewport || *c.viewport != (viewportSpec{width: 320, height: 480, mobile: true, orientation: "portrait"}):
		t.Errorf("viewport: %+v", c.viewport)
	case !c.setHeaders || len(c.headers) != 0:
		t.Errorf("headers: %+v", c.headers)
	}

	c, err = parseEmulationOf(t, map[string]any{"geolocation": nil, "viewport": nil})
	if err != nil || !c.setGeo || c.geo != nil || !c.setViewport || c.viewport != nil || c.empty() {
		t.Errorf("null clears: %+v %v", c, err)
	}
	if c, err := parseEmulationOf(t, map[string]any{}); err != nil || !c.empty() {
		t.Errorf("empty call: %+v %v", c, err)
	}

	for _, bad := range []map[string]any{
		{"networkConditions": "Slow 5G"},
		{"networkConditions": 3.0},
		{"cpuThrottlingRate": 0.0},
		{"cpuThrottlingRate": 0.5},
		{"cpuThrottlingRate": 21.0},
		{"cpuThrottlingRate": "4"},
		{"geolocation": map[string]any{"latitude": 0.0}},
		{"geolocation": map[string]any{"latitude": 0.0, "longitude": 181.0}},
		{"geolocation": map[string]any{"latitude": 0.0, "longitude": 0.0, "accuracy": -1.0}},
		{"geolocation": "here"},
		{"userAgent": 5.0},
		{"userAgent": "a\nb"},
		{"colorScheme": "Dark"},
		{"viewport": map[string]any{"width": -1.0, "height": 100.0}},
		{"viewport": map[string]any{"width": 100.5, "height": 100.0}},
		{"viewport": map[string]any{"width": 100.0, "height": 10001.0}},
		{"viewport": map[string]any{"width": 100.0, "height": 100.0, "deviceScaleFactor": 0.0}},
		{"viewport": map[string]any{"width": 100.0, "height": 100.0, "hasTouch": "yes"}},
		{"viewport": true},
		{"extraHttpHeaders": map[string]any{"X-A": 1.0}},
		{"extraHttpHeaders": map[string]any{"X A": "1"}},
		{"extraHttpHeaders": map[string]any{"X-A": "1\r\nX-B: 2"}},
		{"extraHttpHeaders": []any{"X-A"}},
	} {
		if _, err := parseEmulationOf(t, bad); err == nil {
			t.Errorf("parseEmulationOf(t, %v) accepted", bad)
		}
	}
}

// The string forms chrome-devtools-mcp takes mean the same as the objects.
func TestParseEmulationUpstreamForms(t *testing.T) {
	c, err := parseEmulationOf(t, map[string]any{
		"geolocation":      "48.85, 2.35",
		"viewport":         "390x844x3,mobile,touch",
		"extraHttpHeaders": `{"X-A": "1"}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.geo == nil || c.geo.latitude != 48.85 || c.geo.longitude != 2.35 {
		t.Errorf("geo: %+v", c.geo)
	}
	if c.viewport == nil || *c.viewport != (viewportSpec{width: 390, height: 844, scale: 3, mobile: true, touch: true, orientation: "portrait"}) {
		t.Errorf("viewport: %+v", c.viewport)
	}
	if c.headers["X-A"] != "1" || len(c.headers) != 1 {
		t.Errorf("headers: %v", c.headers)
	}
	c, err = parseEmulationOf(t, map[string]any{"geolocation": "", "viewport": "", "extraHttpHeaders": ""})
	if err != nil || !c.setGeo || c.geo != nil || !c.setViewport || c.viewport != nil || !c.setHeaders || len(c.headers) != 0 {
		t.Errorf("empty strings clear: %+v %v", c, err)
	}
	if c, err := parseEmulationOf(t, map[string]any{"viewport": "800x600,landscape"}); err != nil || c.viewport.orientation != "landscape" || c.viewport.scale != 0 {
		t.Errorf("800x600,landscape: %+v %v", c.viewport, err)
	}
	for _, bad := range []map[string]any{
		{"geolocation": "48.85"},
		{"geolocation": "north,south"},
		{"geolocation": "91,0"},
		{"viewport": "800"},
		{"viewport": "800x600x2x1"},
		{"viewport": "-1x600"},
		{"viewport": "800x600,tablet"},
		{"extraHttpHeaders": "X-A: 1"},
		{"extraHttpHeaders": `["X-A"]`},
		{"extraHttpHeaders": "null"},
	} {
		if _, err := parseEmulationOf(t, bad); err == nil {
			t.Errorf("parseEmulationOf(t, %v) accepted", bad)
		}
	}
}

func TestCheckCookieDomain(t *testing.T) {
	for _, tc := range []struct {
		domain, page string
		ok           bool
	}{
		{"", "http://a.example.com/x", true},
		{"a.example.com", "http://a.example.com/x", true},
		{".example.com", "http://a.example.com/x", true},
		{"EXAMPLE.com", "http://a.example.com/x", true},
		{"com", "http://a.example.com/x", false},
		{"other.com", "http://a.example.com/x", false},
		{"b.a.example.com", "http://a.example.com/x", false},
		{"xample.com", "http://a.example.com/x", false},
		{"127.0.0.1", "http://127.0.0.1:8080/", true},
		{"0.0.1", "http://127.0.0.1:8080/", false},
		{"localhost", "http://127.0.0.1:8080/", false},
	} {
		_, err := checkCookieDomain(tc.domain, tc.page)
		if (err == nil) != tc.ok {
			t.Errorf("checkCookieDomain(%q, %q) = %v, want ok=%v", tc.domain, tc.page, err, tc.ok)
		}
	}
}

func TestParseCookies(t *testing.T) {
	specs, err := parseCookies([]any{
		map[string]any{"name": "a", "value": ""},
		map[string]any{"name": "b", "value": "v", "sameSite": "lax", "secure": true, "expires": 1.9e9, "path": "/p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].path != "/" || specs[1].sameSite != network.CookieSameSiteLax || !specs[1].secure || specs[1].expires != 1.9e9 || specs[1].path != "/p" {
		t.Errorf("specs: %+v", specs)
	}
	for _, bad := range []any{
		nil, []any{}, "a=b",
		[]any{map[string]any{"value": "v"}},
		[]any{map[string]any{"name": "a b", "value": "v"}},
		[]any{map[string]any{"name": "a", "value": "x;y"}},
		[]any{map[string]any{"name": "a"}},
		[]any{map[string]any{"name": "a", "value": "v", "path": "p"}},
		[]any{map[string]any{"name": "a", "value": "v", "expires": -5.0}},
		[]any{map[string]any{"name": "a", "value": "v", "httpOnly": "true"}},
		[]any{map[string]any{"name": "a", "value": "v", "sameSite": "Sometimes"}},
		make([]any, maxSetCookies+1),
	} {
		if _, err := parseCookies(bad); err == nil {
			t.Errorf("parseCookies(%v) accepted", bad)
		}
	}
}

func TestFormatEmulationDefaults(t *testing.T) {
	tab := &Tab{ID: 7, State: NewTabState("x")}
	out := formatEmulation(tab)
	for _, want := range []string{"page 7", "network: no emulation", "CPU: no throttling", "user agent: the browser's own", "viewport: the window's", "extra HTTP headers: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("formatEmulation lacks %q:\n%s", want, out)
		}
	}
}

// parseEmulationOf binds args as emulate does and parses them.
func parseEmulationOf(t *testing.T, args map[string]any) (emulationChange, error) {
	t.Helper()
	var a emulateArgs
	var req mcp.CallToolRequest
	req.Params.Arguments = args
	if err := bindArgs(req, argFields(reflect.TypeFor[emulateArgs]()), &a); err != nil {
		t.Fatal(err)
	}
	return parseEmulation(a)
}
