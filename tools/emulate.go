package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// emulationTools returns emulate, resize_page and get_css_styles: what the
// page's rendering made of an element is what emulation changes, and most
// tasks need neither.
func (t *toolset) emulationTools() []Tool {
	return []Tool{t.emulate(), t.resizePage(), t.getCSSStyles()}
}

// networkPreset is one throttling profile of the DevTools network panel
// (the values of Puppeteer's PredefinedNetworkConditions).
type networkPreset struct {
	offline          bool
	latency          float64 // ms
	download, upload float64 // bytes/s; -1 is unthrottled
}

// networkPresets are the values networkConditions accepts, in the order the
// schema lists them; "No emulation" is the zero preset.
var networkPresets = []struct {
	name string
	networkPreset
}{
	{"No emulation", networkPreset{latency: 0, download: -1, upload: -1}},
	{"Offline", networkPreset{offline: true, latency: 0, download: -1, upload: -1}},
	{"Slow 3G", networkPreset{latency: 400 * 5, download: 500 * 1000 / 8 * 0.8, upload: 500 * 1000 / 8 * 0.8}},
	{"Fast 3G", networkPreset{latency: 150 * 3.75, download: 1.6 * 1000 * 1000 / 8 * 0.9, upload: 750 * 1000 / 8 * 0.9}},
	{"Slow 4G", networkPreset{latency: 150 * 3.75, download: 1.6 * 1000 * 1000 / 8 * 0.9, upload: 750 * 1000 / 8 * 0.9}},
	{"Fast 4G", networkPreset{latency: 60 * 2.75, download: 9 * 1000 * 1000 / 8 * 0.9, upload: 1.5 * 1000 * 1000 / 8 * 0.9}},
}

func networkPresetNames() []string {
	names := make([]string, len(networkPresets))
	for i, p := range networkPresets {
		names[i] = p.name
	}
	return names
}

func lookupNetworkPreset(name string) (networkPreset, bool) {
	for _, p := range networkPresets {
		if p.name == name {
			return p.networkPreset, true
		}
	}
	return networkPreset{}, false
}

// Bounds of the emulate arguments. The browser accepts far larger viewports,
// but nobody needs one beyond 10000 CSS pixels and screenshots of it would be
// huge.
const (
	maxViewportSide  = 10000
	maxScaleFactor   = 10
	maxCPUThrottle   = 20
	maxExtraHeaders  = 64
	maxHeaderValue   = 8192
	maxUserAgentSize = 1024
)

// emulationSettings is what emulate has set on a tab; zero values mean the
// browser's own behaviour.
type emulationSettings struct {
	network     string // preset name; "" is no emulation
	cpuRate     float64
	geo         *geoPosition
	userAgent   string
	colorScheme string // "dark" or "light"; "" follows the system
	viewport    *viewportSpec
	headers     map[string]string
}

type geoPosition struct {
	latitude, longitude, accuracy float64
}

type viewportSpec struct {
	width, height int64
	scale         float64 // 0 keeps the real device scale factor
	mobile, touch bool
	orientation   string // "landscape", "portrait", or "" for the screen's own
}

// permissionGrant is a geolocation permission that emulate granted, with the
// state it had before, so that clearing the geolocation can put it back.
type permissionGrant struct {
	origin  string
	context cdp.BrowserContextID
	before  browser.PermissionSetting
}

// maxGrants bounds the origins a tab remembers granting geolocation to.
const maxGrants = 16

// emulationState remembers a tab's emulation: overrides live in the tab's
// DevTools session and the browser cannot report them back.
type emulationState struct {
	mu     sync.Mutex
	cur    emulationSettings
	grants []permissionGrant
}

func (e *emulationState) get() emulationSettings {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.cur
	s.headers = maps.Clone(e.cur.headers)
	return s
}

func (e *emulationState) update(f func(*emulationSettings)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.cur)
}

func (e *emulationState) granted(origin string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.ContainsFunc(e.grants, func(g permissionGrant) bool { return g.origin == origin })
}

func (e *emulationState) addGrant(g permissionGrant) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.grants) < maxGrants {
		e.grants = append(e.grants, g)
	}
}

func (e *emulationState) takeGrants() []permissionGrant {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.grants
	e.grants = nil
	return g
}

// emulationChange is a validated emulate call: a nil pointer leaves that part
// as it is.
type emulationChange struct {
	network     *string
	cpuRate     *float64
	setGeo      bool
	geo         *geoPosition // nil with setGeo clears the override
	userAgent   *string
	colorScheme *string
	setViewport bool
	viewport    *viewportSpec // nil with setViewport clears the override
	headers     map[string]string
	setHeaders  bool
}

func (c emulationChange) empty() bool {
	return c.network == nil && c.cpuRate == nil && !c.setGeo && c.userAgent == nil &&
		c.colorScheme == nil && !c.setViewport && !c.setHeaders
}

// httpHeaderName is an HTTP token (RFC 9110).
var httpHeaderName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// emulateArgs are the arguments of emulate. Each is a jsonArg, checked by
// parseEmulation: a part given as null resets it, one left out stays.
type emulateArgs struct {
	pageArg
	NetworkConditions jsonArg `json:"networkConditions"`
	CPUThrottlingRate jsonArg `json:"cpuThrottlingRate"`
	Geolocation       jsonArg `json:"geolocation"`
	UserAgent         jsonArg `json:"userAgent"`
	ColorScheme       jsonArg `json:"colorScheme"`
	Viewport          jsonArg `json:"viewport"`
	ExtraHTTPHeaders  jsonArg `json:"extraHttpHeaders"`
}

// parseEmulation checks every part of an emulate call before any is applied,
// so that a bad argument changes nothing.
func parseEmulation(a emulateArgs) (emulationChange, error) {
	var c emulationChange
	if a.NetworkConditions.Set {
		v := a.NetworkConditions.Value
		name, isStr := v.(string)
		if _, known := lookupNetworkPreset(name); !isStr || !known {
			return c, fmt.Errorf("networkConditions %v is not one of %s", jsonValue(v), jsonValue(networkPresetNames()))
		}
		c.network = &name
	}
	if a.CPUThrottlingRate.Set {
		v := a.CPUThrottlingRate.Value
		r, isNum := argNumber(v)
		if !isNum || r < 1 || r > maxCPUThrottle {
			return c, fmt.Errorf("cpuThrottlingRate must be a number from 1 to %d (1 turns throttling off); got %v", maxCPUThrottle, jsonValue(v))
		}
		c.cpuRate = &r
	}
	if a.Geolocation.Set {
		v := a.Geolocation.Value
		c.setGeo = true
		if v != nil && v != "" {
			g, err := parseGeolocation(v)
			if err != nil {
				return c, err
			}
			c.geo = g
		}
	}
	if a.UserAgent.Set {
		v := a.UserAgent.Value
		ua, isStr := v.(string)
		if !isStr {
			return c, fmt.Errorf(`userAgent must be a string ("" restores the browser's own); got %v`, jsonValue(v))
		}
		if len(ua) > maxUserAgentSize || strings.ContainsAny(ua, "\r\n\x00") {
			return c, fmt.Errorf("userAgent must be one line of at most %d bytes", maxUserAgentSize)
		}
		c.userAgent = &ua
	}
	if a.ColorScheme.Set {
		v := a.ColorScheme.Value
		s, _ := v.(string)
		switch s {
		case "dark", "light", "auto":
		default:
			return c, fmt.Errorf(`colorScheme must be "dark", "light" or "auto"; got %v`, jsonValue(v))
		}
		if s == "auto" {
			s = ""
		}
		c.colorScheme = &s
	}
	if a.Viewport.Set {
		v := a.Viewport.Value
		c.setViewport = true
		if v != nil && v != "" {
			vp, err := parseViewport(v)
			if err != nil {
				return c, err
			}
			c.viewport = vp
		}
	}
	if a.ExtraHTTPHeaders.Set {
		v := a.ExtraHTTPHeaders.Value
		h, err := parseHeaders(v)
		if err != nil {
			return c, err
		}
		c.headers, c.setHeaders = h, true
	}
	return c, nil
}

// argNumber reads a JSON number argument.
func argNumber(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// argInteger reads a JSON number argument that must be whole.
func argInteger(v any) (int64, bool) {
	f, ok := argNumber(v)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func parseGeolocation(v any) (*geoPosition, error) {
	if s, ok := v.(string); ok {
		// chrome-devtools-mcp's form, "<latitude>,<longitude>".
		lat, lon, found := strings.Cut(s, ",")
		la, errLat := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		lo, errLon := strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if !found || errLat != nil || errLon != nil {
			return nil, fmt.Errorf(`geolocation %s is not "<latitude>,<longitude>"`, quote(s))
		}
		v = map[string]any{"latitude": la, "longitude": lo}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("geolocation must be an object {latitude, longitude, accuracy?}, or null to clear it; got %v", jsonValue(v))
	}
	lat, okLat := argNumber(m["latitude"])
	lon, okLon := argNumber(m["longitude"])
	if !okLat || lat < -90 || lat > 90 {
		return nil, fmt.Errorf("geolocation.latitude must be a number from -90 to 90; got %v", jsonValue(m["latitude"]))
	}
	if !okLon || lon < -180 || lon > 180 {
		return nil, fmt.Errorf("geolocation.longitude must be a number from -180 to 180; got %v", jsonValue(m["longitude"]))
	}
	g := &geoPosition{latitude: lat, longitude: lon}
	if a, ok := m["accuracy"]; ok && a != nil {
		acc, isNum := argNumber(a)
		if !isNum || acc < 0 {
			return nil, fmt.Errorf("geolocation.accuracy must be a number of metres, 0 or more; got %v", jsonValue(a))
		}
		g.accuracy = acc
	}
	return g, nil
}

func parseViewport(v any) (*viewportSpec, error) {
	if s, ok := v.(string); ok {
		m, err := viewportString(s)
		if err != nil {
			return nil, err
		}
		v = m
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("viewport must be an object {width, height, deviceScaleFactor?, isMobile?, hasTouch?, isLandscape?}, or null to reset it; got %v", jsonValue(v))
	}
	w, okW := argInteger(m["width"])
	h, okH := argInteger(m["height"])
	if !okW || w < 1 || w > maxViewportSide || !okH || h < 1 || h > maxViewportSide {
		return nil, fmt.Errorf("viewport.width and viewport.height must be whole numbers of CSS pixels from 1 to %d; got %v x %v",
			maxViewportSide, jsonValue(m["width"]), jsonValue(m["height"]))
	}
	vp := &viewportSpec{width: w, height: h}
	if s, ok := m["deviceScaleFactor"]; ok && s != nil {
		f, isNum := argNumber(s)
		if !isNum || f <= 0 || f > maxScaleFactor {
			return nil, fmt.Errorf("viewport.deviceScaleFactor must be a number above 0 and at most %d; got %v", maxScaleFactor, jsonValue(s))
		}
		vp.scale = f
	}
	for _, b := range []struct {
		key string
		dst *bool
	}{{"isMobile", &vp.mobile}, {"hasTouch", &vp.touch}} {
		if x, ok := m[b.key]; ok && x != nil {
			bv, isBool := x.(bool)
			if !isBool {
				return nil, fmt.Errorf("viewport.%s must be true or false; got %v", b.key, jsonValue(x))
			}
			*b.dst = bv
		}
	}
	if x, ok := m["isLandscape"]; ok && x != nil {
		bv, isBool := x.(bool)
		if !isBool {
			return nil, fmt.Errorf("viewport.isLandscape must be true or false; got %v", jsonValue(x))
		}
		vp.orientation = "portrait"
		if bv {
			vp.orientation = "landscape"
		}
	}
	return vp, nil
}

// viewportString reads chrome-devtools-mcp's viewport form,
// "<width>x<height>[x<devicePixelRatio>][,mobile][,touch][,landscape]", into
// the object form.
func viewportString(s string) (map[string]any, error) {
	dims, tags, _ := strings.Cut(s, ",")
	parts := strings.Split(dims, "x")
	m := map[string]any{"isLandscape": false}
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf(`viewport %s is not "<width>x<height>[x<devicePixelRatio>][,mobile][,touch][,landscape]"`, quote(s))
	}
	for i, key := range []string{"width", "height", "deviceScaleFactor"}[:len(parts)] {
		f, err := strconv.ParseFloat(strings.TrimSpace(parts[i]), 64)
		if err != nil {
			return nil, fmt.Errorf("viewport %s: %s %s is not a number", quote(s), key, quote(parts[i]))
		}
		m[key] = f
	}
	for _, tag := range strings.Split(tags, ",") {
		switch strings.TrimSpace(tag) {
		case "":
		case "mobile":
			m["isMobile"] = true
		case "touch":
			m["hasTouch"] = true
		case "landscape":
			m["isLandscape"] = true
		default:
			return nil, fmt.Errorf("viewport %s: unknown flag %s; use mobile, touch or landscape", quote(s), quote(tag))
		}
	}
	return m, nil
}

func parseHeaders(v any) (map[string]string, error) {
	if s, ok := v.(string); ok {
		// chrome-devtools-mcp's form: a JSON object in a string, "" clears.
		var obj map[string]any
		if s == "" {
			obj = map[string]any{}
		} else if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("extraHttpHeaders %s is not a JSON object of header name to value", quote(cookieShorten(s, 100)))
		}
		v = obj
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("extraHttpHeaders must be an object of header name to string value ({} clears them); got %v", jsonValue(v))
	}
	if len(m) > maxExtraHeaders {
		return nil, fmt.Errorf("extraHttpHeaders has %d headers; at most %d are allowed", len(m), maxExtraHeaders)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		s, isStr := x.(string)
		switch {
		case !httpHeaderName.MatchString(k):
			return nil, fmt.Errorf("extraHttpHeaders: %s is not a valid HTTP header name", quote(k))
		case !isStr:
			return nil, fmt.Errorf("extraHttpHeaders: the value of %s must be a string; got %v", k, jsonValue(x))
		case len(s) > maxHeaderValue || strings.ContainsAny(s, "\r\n\x00"):
			return nil, fmt.Errorf("extraHttpHeaders: the value of %s must be one line of at most %d bytes", k, maxHeaderValue)
		}
		out[k] = s
	}
	return out, nil
}

func (t *toolset) emulate() Tool {
	// The object form, chrome-devtools-mcp's string form, or null to clear.
	orString := func(str string, nullable bool) mcp.PropertyOption {
		return func(s map[string]any) {
			obj := map[string]any{"type": "object", "properties": s["properties"]}
			if r, ok := s["required"]; ok {
				obj["required"] = r
			}
			if ap, ok := s["additionalProperties"]; ok {
				obj["additionalProperties"] = ap
			}
			alts := []any{obj, map[string]any{"type": "string", "description": str}}
			if nullable {
				alts = append(alts, map[string]any{"type": "null"})
			}
			for _, k := range []string{"type", "properties", "required", "additionalProperties"} {
				delete(s, k)
			}
			s["anyOf"] = alts
		}
	}
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("emulate",
			mcp.WithDescription("Emulate network, CPU, geolocation, user agent, color scheme, viewport or headers; only given parts change. Returns all."),
			mcp.WithString("networkConditions", mcp.Enum(networkPresetNames()...)),
			mcp.WithNumber("cpuThrottlingRate", mcp.Min(1), mcp.Max(maxCPUThrottle)),
			mcp.WithObject("geolocation",
				mcp.Description("Grants the permission"),
				mcp.Properties(map[string]any{
					"latitude":  map[string]any{"type": "number", "minimum": -90, "maximum": 90},
					"longitude": map[string]any{"type": "number", "minimum": -180, "maximum": 180},
					"accuracy":  map[string]any{"type": "number", "minimum": 0},
				}),
				func(s map[string]any) { s["required"] = []string{"latitude", "longitude"} },
				orString(`"lat,long"`, true)),
			mcp.WithString("userAgent"),
			mcp.WithString("colorScheme", mcp.Enum("dark", "light", "auto")),
			mcp.WithObject("viewport",
				mcp.Description("CSS px"),
				mcp.Properties(map[string]any{
					"width":             map[string]any{"type": "integer", "minimum": 1, "maximum": maxViewportSide},
					"height":            map[string]any{"type": "integer", "minimum": 1, "maximum": maxViewportSide},
					"deviceScaleFactor": map[string]any{"type": "number", "exclusiveMinimum": 0, "maximum": maxScaleFactor},
					"isMobile":          map[string]any{"type": "boolean"},
					"hasTouch":          map[string]any{"type": "boolean"},
					"isLandscape":       map[string]any{"type": "boolean"},
				}),
				func(s map[string]any) { s["required"] = []string{"width", "height"} },
				orString(`"WxH[xDPR][,mobile][,touch][,landscape]"`, true)),
			mcp.WithObject("extraHttpHeaders",
				mcp.AdditionalProperties(map[string]any{"type": "string"}),
				orString(`JSON object`, false)),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a emulateArgs) (*mcp.CallToolResult, error) {
			change, err := parseEmulation(a)
			if err != nil {
				return mcp.NewToolResultError("emulate: " + err.Error() + "; nothing was changed"), nil
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			notes, err := applyEmulation(cctx, tab, change)
			if err != nil {
				msg := "emulate"
				if len(notes) > 0 {
					msg += " (applied before the failure: " + strings.Join(notes, "; ") + ")"
				}
				r := mcp.NewToolResultError(cdpError(msg, cctx, tab, t.cfg.CallTimeout, err).Error())
				r.Content = append(r.Content, mcp.NewTextContent(formatEmulation(tab)))
				return r, nil
			}
			head := "Nothing to change: give at least one of networkConditions, cpuThrottlingRate, geolocation, userAgent, colorScheme, viewport, extraHttpHeaders."
			if !change.empty() {
				head = "Emulation updated."
			}
			if len(notes) > 0 {
				head += "\n" + strings.Join(notes, "\n")
			}
			return mcp.NewToolResultText(head + "\n" + formatEmulation(tab)), nil
		}),
	}
}

// applyEmulation applies a validated change part by part, recording each part
// as soon as the browser took it. It returns notes for the caller, such as a
// permission it granted.
func applyEmulation(ctx context.Context, tab *Tab, c emulationChange) ([]string, error) {
	st := &tab.State.emulation
	var notes []string
	if c.network != nil {
		p, _ := lookupNetworkPreset(*c.network)
		if err := emulateNetwork(ctx, p); err != nil {
			return notes, err
		}
		name := *c.network
		if name == "No emulation" {
			name = ""
		}
		st.update(func(s *emulationSettings) { s.network = name })
	}
	if c.cpuRate != nil {
		if _, err := chromedp.Call(ctx, emulation.SetCPUThrottlingRate, emulation.SetCPUThrottlingRateParams{Rate: *c.cpuRate}); err != nil {
			return notes, err
		}
		st.update(func(s *emulationSettings) { s.cpuRate = *c.cpuRate })
	}
	if c.setGeo {
		note, err := emulateGeolocation(ctx, tab, c.geo)
		if note != "" {
			notes = append(notes, note)
		}
		if err != nil {
			return notes, err
		}
	}
	if c.userAgent != nil {
		if _, err := chromedp.Call(ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: *c.userAgent}); err != nil {
			return notes, err
		}
		st.update(func(s *emulationSettings) { s.userAgent = *c.userAgent })
	}
	if c.colorScheme != nil {
		// An empty value drops only this feature's override.
		feature := []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: *c.colorScheme}}
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: feature}); err != nil {
			return notes, err
		}
		st.update(func(s *emulationSettings) { s.colorScheme = *c.colorScheme })
	}
	if c.setViewport {
		if err := emulateViewport(ctx, c.viewport); err != nil {
			return notes, err
		}
		st.update(func(s *emulationSettings) { s.viewport = c.viewport })
	}
	if c.setHeaders {
		h := network.Headers{}
		for k, v := range c.headers {
			h[k] = v
		}
		if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h}); err != nil {
			return notes, err
		}
		st.update(func(s *emulationSettings) { s.headers = c.headers })
	}
	return notes, nil
}

// legacyNetworkConditions are the parameters of Network.emulateNetworkConditions,
// which cdproto no longer carries but browsers older than its replacement
// (Network.emulateNetworkConditionsByRule) still need.
type legacyNetworkConditions struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

var emulateNetworkConditionsLegacy = cdp.Command[legacyNetworkConditions, cdp.Empty]{Method: "Network.emulateNetworkConditions"}

// emulateNetwork throttles the tab's requests and sets navigator.onLine to
// match. The by-rule command does not touch navigator state, hence the
// second call.
func emulateNetwork(ctx context.Context, p networkPreset) error {
	rules := []*network.Conditions{}
	if p.offline || p.latency > 0 || p.download >= 0 || p.upload >= 0 {
		rules = append(rules, &network.Conditions{Offline: p.offline, Latency: p.latency, DownloadThroughput: p.download, UploadThroughput: p.upload})
	}
	_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules})
	if isUnknownMethod(err) {
		_, err = chromedp.Call(ctx, emulateNetworkConditionsLegacy, legacyNetworkConditions{
			Offline: p.offline, Latency: p.latency, DownloadThroughput: p.download, UploadThroughput: p.upload,
		})
		return err
	}
	if err != nil {
		return err
	}
	_, err = chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{
		Offline: p.offline, Latency: p.latency, DownloadThroughput: p.download, UploadThroughput: p.upload,
	})
	return err
}

// isUnknownMethod reports whether the browser does not know the command.
func isUnknownMethod(err error) bool {
	var cerr *cdproto.Error
	return errors.As(err, &cerr) && cerr.Code == -32601
}

// emulateGeolocation sets or clears the position override. Setting it also
// grants the page's origin the geolocation permission, which a page needs
// before navigator.geolocation answers; clearing it puts back the permission
// state emulate found.
func emulateGeolocation(ctx context.Context, tab *Tab, g *geoPosition) (string, error) {
	st := &tab.State.emulation
	if g == nil {
		if _, err := chromedp.Call(ctx, emulation.ClearGeolocationOverride, cdp.Empty{}); err != nil {
			return "", err
		}
		st.update(func(s *emulationSettings) { s.geo = nil })
		var restored []string
		for _, gr := range st.takeGrants() {
			_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
				Permission: &browser.PermissionDescriptor{Name: "geolocation"}, Setting: gr.before,
				Origin: gr.origin, BrowserContextID: gr.context,
			})
			if err == nil {
				restored = append(restored, fmt.Sprintf("%s (%s)", gr.origin, gr.before))
			}
		}
		if len(restored) > 0 {
			return "Geolocation permission put back for " + strings.Join(restored, ", ") + ".", nil
		}
		return "", nil
	}
	if _, err := chromedp.Call(ctx, emulation.SetGeolocationOverride, emulation.SetGeolocationOverrideParams{
		Latitude: ptr(g.latitude), Longitude: ptr(g.longitude), Accuracy: ptr(g.accuracy),
	}); err != nil {
		return "", err
	}
	st.update(func(s *emulationSettings) { s.geo = g })
	return grantGeolocation(ctx, tab)
}

// grantGeolocation grants the page's origin the geolocation permission, in
// the tab's browser context only, unless it has it already.
func grantGeolocation(ctx context.Context, tab *Tab) (string, error) {
	info, err := chromedp.CallBrowser(ctx, target.GetTargetInfo, target.GetTargetInfoParams{TargetID: tab.TargetID})
	if err != nil {
		return "", err
	}
	origin := webOrigin(info.TargetInfo.URL)
	if origin == "" {
		return fmt.Sprintf("The page shows %s, which cannot get the geolocation permission; after navigating to an http(s) page, call emulate with geolocation again so that page is granted it.", info.TargetInfo.URL), nil
	}
	if tab.State.emulation.granted(origin) {
		return "", nil
	}
	before := browser.PermissionSettingPrompt
	q, err := chromedp.Call(ctx, runtime.Evaluate, runtime.EvaluateParams{
		Expression:   "navigator.permissions.query({name: 'geolocation'}).then(p => p.state)",
		AwaitPromise: ptr(true), ReturnByValue: ptr(true),
	})
	if err == nil && q.ExceptionDetails == nil && q.Result != nil {
		switch string(q.Result.Value) {
		case `"granted"`:
			return "", nil
		case `"denied"`:
			before = browser.PermissionSettingDenied
		}
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "geolocation"}, Setting: browser.PermissionSettingGranted,
		Origin: origin, BrowserContextID: info.TargetInfo.BrowserContextID,
	}); err != nil {
		return "", err
	}
	tab.State.emulation.addGrant(permissionGrant{origin: origin, context: info.TargetInfo.BrowserContextID, before: before})
	return fmt.Sprintf("Granted the geolocation permission to %s (it was %s); clearing the geolocation puts that back.", origin, before), nil
}

// webOrigin returns the origin of an http(s) URL, or "" for any other.
func webOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// emulateViewport sets or clears the device metrics override and touch.
func emulateViewport(ctx context.Context, vp *viewportSpec) error {
	if vp == nil {
		if _, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{Enabled: false})
		return err
	}
	p := emulation.SetDeviceMetricsOverrideParams{
		Width: vp.width, Height: vp.height, DeviceScaleFactor: vp.scale, Mobile: vp.mobile,
	}
	switch vp.orientation {
	case "landscape":
		p.ScreenOrientation = &emulation.ScreenOrientation{Type: emulation.ScreenOrientationTypeLandscapePrimary, Angle: 90}
	case "portrait":
		p.ScreenOrientation = &emulation.ScreenOrientation{Type: emulation.ScreenOrientationTypePortraitPrimary, Angle: 0}
	}
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, p); err != nil {
		return err
	}
	touch := emulation.SetTouchEmulationEnabledParams{Enabled: vp.touch}
	if vp.touch {
		touch.MaxTouchPoints = 1
	}
	_, err := chromedp.Call(ctx, emulation.SetTouchEmulationEnabled, touch)
	return err
}

// formatEmulation describes every part of the tab's current emulation.
func formatEmulation(tab *Tab) string {
	s := tab.State.emulation.get()
	var b strings.Builder
	fmt.Fprintf(&b, "## Emulation of page %d\n", tab.ID)
	if p, ok := lookupNetworkPreset(s.network); ok && s.network != "" {
		if p.offline {
			b.WriteString("- network: Offline\n")
		} else {
			fmt.Fprintf(&b, "- network: %s (latency %g ms, download %.0f B/s, upload %.0f B/s)\n", s.network, p.latency, p.download, p.upload)
		}
	} else {
		b.WriteString("- network: no emulation\n")
	}
	if s.cpuRate > 1 {
		fmt.Fprintf(&b, "- CPU: %gx slowdown\n", s.cpuRate)
	} else {
		b.WriteString("- CPU: no throttling\n")
	}
	if s.geo != nil {
		fmt.Fprintf(&b, "- geolocation: latitude %g, longitude %g, accuracy %g m\n", s.geo.latitude, s.geo.longitude, s.geo.accuracy)
	} else {
		b.WriteString("- geolocation: the browser's own\n")
	}
	if s.userAgent != "" {
		fmt.Fprintf(&b, "- user agent: %s\n", quote(s.userAgent))
	} else {
		b.WriteString("- user agent: the browser's own\n")
	}
	if s.colorScheme != "" {
		fmt.Fprintf(&b, "- color scheme: %s\n", s.colorScheme)
	} else {
		b.WriteString("- color scheme: auto (the system's)\n")
	}
	if vp := s.viewport; vp != nil {
		fmt.Fprintf(&b, "- viewport: %dx%d CSS px", vp.width, vp.height)
		if vp.scale > 0 {
			fmt.Fprintf(&b, ", deviceScaleFactor %g", vp.scale)
		}
		if vp.mobile {
			b.WriteString(", mobile")
		}
		if vp.touch {
			b.WriteString(", touch")
		}
		if vp.orientation != "" {
			b.WriteString(", " + vp.orientation)
		}
		b.WriteByte('\n')
	} else {
		b.WriteString("- viewport: the window's\n")
	}
	if len(s.headers) > 0 {
		names := slices.Sorted(maps.Keys(s.headers))
		b.WriteString("- extra HTTP headers:")
		for _, k := range names {
			fmt.Fprintf(&b, " %s: %s;", k, quote(s.headers[k]))
		}
		b.WriteByte('\n')
	} else {
		b.WriteString("- extra HTTP headers: none\n")
	}
	return b.String()
}

type resizePageArgs struct {
	pageArg
	Width  *float64 `json:"width"`
	Height *float64 `json:"height"`
}

// wholeArg reads a number argument that must be whole.
func wholeArg(p *float64) (int64, bool) {
	if p == nil {
		return 0, false
	}
	return argInteger(*p)
}

func (t *toolset) resizePage() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("resize_page",
			mcp.WithDescription("Resize this page's viewport (CSS px), not the window."),
			mcp.WithNumber("width", mcp.Required(), mcp.Min(1), mcp.Max(maxViewportSide)),
			mcp.WithNumber("height", mcp.Required(), mcp.Min(1), mcp.Max(maxViewportSide)),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a resizePageArgs) (*mcp.CallToolResult, error) {
			w, okW := wholeArg(a.Width)
			h, okH := wholeArg(a.Height)
			if !okW || w < 1 || w > maxViewportSide || !okH || h < 1 || h > maxViewportSide {
				return mcp.NewToolResultErrorf("resize_page needs width and height, whole numbers of CSS pixels from 1 to %d; got %s x %s",
					maxViewportSide, jsonValue(a.Width), jsonValue(a.Height)), nil
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			// Keep what emulate set besides the size, so that a resize does not
			// silently drop a mobile or high-DPI emulation.
			vp := viewportSpec{}
			if cur := tab.State.emulation.get().viewport; cur != nil {
				vp = *cur
			}
			vp.width, vp.height = w, h
			if err := emulateViewport(cctx, &vp); err != nil {
				return nil, cdpError("resize_page", cctx, tab, t.cfg.CallTimeout, err)
			}
			tab.State.emulation.update(func(s *emulationSettings) { s.viewport = &vp })
			msg := fmt.Sprintf("Resized page %d's viewport to %dx%d CSS pixels (Emulation.setDeviceMetricsOverride on this page only; the browser window is shared with other pages, so it keeps its size).", tab.ID, w, h)
			if got, err := chromedp.Call(cctx, runtime.Evaluate, runtime.EvaluateParams{
				Expression: "[innerWidth, innerHeight]", ReturnByValue: ptr(true),
			}); err == nil && got.Result != nil {
				msg += fmt.Sprintf(" The page now reports [innerWidth, innerHeight] = %s.", got.Result.Value)
			}
			return mcp.NewToolResultText(msg + " emulate with viewport null undoes it."), nil
		}),
	}
}
