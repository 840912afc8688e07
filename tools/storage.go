package tools

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// storageTools returns get_cookies, set_cookies, clear_cookies and pdf_page.
func (t *toolset) storageTools() []Tool {
	return []Tool{t.getCookies(), t.setCookies(), t.clearCookies(), t.pdfPage()}
}

// Bounds of the cookie tools' arguments and answers.
const (
	maxSetCookies     = 50
	maxCookieValueOut = 300 // characters of a value shown by get_cookies
)

// The cookie jar is the user's whole browser profile: every cookie tool
// works on the cookies of the page's own URL only, never on the jar as a
// whole (no Network.clearBrowserCookies, no getCookies without urls).

// cookieURL returns the URL of the page's main document, or, when the page
// is not on an http(s) URL and so has no cookies, a message saying so.
func cookieURL(ctx context.Context, tab *Tab) (string, string, error) {
	info, err := chromedp.CallBrowser(ctx, target.GetTargetInfo, target.GetTargetInfoParams{TargetID: tab.TargetID})
	if err != nil {
		return "", "", err
	}
	u := info.TargetInfo.URL
	if webOrigin(u) == "" {
		return "", fmt.Sprintf("Page %d shows %s, which has no cookies (only http and https pages do); navigate_page to an http(s) URL first.", tab.ID, cookieShorten(u, 100)), nil
	}
	return u, "", nil
}

func cookieShorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// pageCookies returns the cookies the browser would send to pageURL.
func pageCookies(ctx context.Context, pageURL string) ([]*network.Cookie, error) {
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{pageURL}})
	if err != nil {
		return nil, err
	}
	return res.Cookies, nil
}

// filterCookies keeps the cookies named in names (all when names is empty),
// sorted by name.
func filterCookies(cookies []*network.Cookie, names []string) []*network.Cookie {
	var out []*network.Cookie
	for _, c := range cookies {
		if len(names) == 0 || slices.Contains(names, c.Name) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b *network.Cookie) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func formatCookie(c *network.Cookie) string {
	expires := "session"
	if !c.Session && c.Expires > 0 {
		expires = time.Unix(int64(c.Expires), 0).UTC().Format(time.RFC3339)
	}
	sameSite := string(c.SameSite)
	if sameSite == "" {
		sameSite = "unset"
	}
	value := c.Value
	if len(value) > maxCookieValueOut {
		value = fmt.Sprintf("%s… (%d bytes)", value[:maxCookieValueOut], len(c.Value))
	}
	return fmt.Sprintf("%s=%s; domain=%s; path=%s; expires=%s; httpOnly=%t; secure=%t; sameSite=%s",
		c.Name, value, c.Domain, c.Path, expires, c.HTTPOnly, c.Secure, sameSite)
}

func cookieNames(cookies []*network.Cookie) []string {
	out := make([]string, len(cookies))
	for i, c := range cookies {
		out[i] = c.Name
	}
	return out
}

// cookieNamesArgs are the arguments of get_cookies and clear_cookies.
type cookieNamesArgs struct {
	pageArg
	// Names is checked by namesArg, for its own message.
	Names any `json:"names"`
}

// namesArg reads the optional names filter.
func namesArg(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		return nil, fmt.Errorf("names must be an array of cookie names")
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, isStr := e.(string)
		if !isStr || s == "" {
			return nil, fmt.Errorf("names must be an array of non-empty cookie names")
		}
		out = append(out, s)
	}
	return out, nil
}

// cookieSpan is the page and the cookies a get/clear_cookies call is about.
type cookieSpan struct {
	tab     *Tab
	ctx     context.Context // bounds the call's CDP exchanges
	cancel  context.CancelFunc
	url     string
	names   []string
	cookies []*network.Cookie // of url, filtered by names
	none    string            // the answer of a page without cookies; nothing else is set
}

// cookieScope reads the names argument, the page's URL and its cookies. A
// page without cookies (about:blank, data:) answers text + noneSuffix, in
// the span's none.
func (t *toolset) cookieScope(ctx context.Context, a cookieNamesArgs, tool, noneSuffix string) (*cookieSpan, error) {
	names, err := namesArg(a.Names)
	if err != nil {
		return nil, argErrorf("%v", err)
	}
	tab, err := pageOf(ctx, a.PageID)
	if err != nil {
		return nil, err
	}
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	u, none, err := cookieURL(cctx, tab)
	if err == nil && none != "" {
		cancel()
		return &cookieSpan{none: none + noneSuffix}, nil
	}
	var all []*network.Cookie
	if err == nil {
		all, err = pageCookies(cctx, u)
	}
	if err != nil {
		defer cancel()
		return nil, cdpError(tool, cctx, tab, t.cfg.CallTimeout, err)
	}
	return &cookieSpan{tab: tab, ctx: cctx, cancel: cancel, url: u, names: names, cookies: filterCookies(all, names)}, nil
}

var namesOption = mcp.WithArray("names", mcp.WithStringItems(), mcp.Description("Default all"))

func (t *toolset) getCookies() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("get_cookies",
			mcp.WithDescription("List the cookies sent to the page's URL: name=value, domain, path, expires, flags."),
			namesOption,
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a cookieNamesArgs) (*mcp.CallToolResult, error) {
			sc, err := t.cookieScope(ctx, a, "get_cookies", "")
			if err != nil {
				return nil, err
			}
			if sc.none != "" {
				return mcp.NewToolResultText(sc.none), nil
			}
			defer sc.cancel()
			tab, u, names, cookies := sc.tab, sc.url, sc.names, sc.cookies
			var b strings.Builder
			fmt.Fprintf(&b, "## Cookies of %s (page %d): %d\n", u, tab.ID, len(cookies))
			for _, c := range cookies {
				b.WriteString(formatCookie(c) + "\n")
			}
			if len(cookies) == 0 {
				b.WriteString("No cookies.\n")
			}
			if missing := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(cookieNames(cookies), n) }); len(missing) > 0 {
				fmt.Fprintf(&b, "Not set for this URL: %s\n", strings.Join(missing, ", "))
			}
			return mcp.NewToolResultText(b.String()), nil
		}),
	}
}

// cookieSpec is one validated cookie of a set_cookies call.
type cookieSpec struct {
	name, value, domain, path string
	secure, httpOnly          bool
	sameSite                  network.CookieSameSite
	expires                   float64 // unix seconds; 0 is a session cookie
}

// parseCookies checks every cookie of a set_cookies call before any is set.
func parseCookies(v any) ([]cookieSpec, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("cookies must be a non-empty array of {name, value, path?, domain?, secure?, httpOnly?, sameSite?, expires?}")
	}
	if len(list) > maxSetCookies {
		return nil, fmt.Errorf("at most %d cookies can be set in one call; got %d", maxSetCookies, len(list))
	}
	out := make([]cookieSpec, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("cookies[%d] must be an object {name, value, ...}", i)
		}
		c, err := parseCookie(m)
		if err != nil {
			return nil, fmt.Errorf("cookies[%d]: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func parseCookie(m map[string]any) (cookieSpec, error) {
	var c cookieSpec
	name, _ := m["name"].(string)
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(";=,\"", r) }) {
		return c, fmt.Errorf("name must be a non-empty cookie name without spaces, control characters or ;=,\"; got %v", jsonValue(m["name"]))
	}
	value, isStr := m["value"].(string)
	if !isStr || strings.ContainsFunc(value, func(r rune) bool { return r < ' ' || r == 0x7f || r == ';' }) {
		return c, fmt.Errorf("value of %s must be a string without ; or control characters", name)
	}
	c.name, c.value, c.path = name, value, "/"
	if p, ok := m["path"]; ok && p != nil {
		s, _ := p.(string)
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, ";\r\n\x00") {
			return c, fmt.Errorf("path of %s must start with /; got %v", name, jsonValue(p))
		}
		c.path = s
	}
	if d, ok := m["domain"]; ok && d != nil {
		s, isStr := d.(string)
		if !isStr {
			return c, fmt.Errorf("domain of %s must be a string", name)
		}
		c.domain = s
	}
	for _, b := range []struct {
		key string
		dst *bool
	}{{"secure", &c.secure}, {"httpOnly", &c.httpOnly}} {
		if x, ok := m[b.key]; ok && x != nil {
			bv, isBool := x.(bool)
			if !isBool {
				return c, fmt.Errorf("%s of %s must be true or false", b.key, name)
			}
			*b.dst = bv
		}
	}
	if x, ok := m["sameSite"]; ok && x != nil {
		s, _ := x.(string)
		switch strings.ToLower(s) {
		case "strict":
			c.sameSite = network.CookieSameSiteStrict
		case "lax":
			c.sameSite = network.CookieSameSiteLax
		case "none":
			c.sameSite = network.CookieSameSiteNone
		default:
			return c, fmt.Errorf(`sameSite of %s must be "Strict", "Lax" or "None"; got %v`, name, jsonValue(x))
		}
	}
	if x, ok := m["expires"]; ok && x != nil {
		f, isNum := argNumber(x)
		if !isNum || f <= 0 {
			return c, fmt.Errorf("expires of %s must be a time in unix seconds; leave it out for a session cookie", name)
		}
		c.expires = f
	}
	return c, nil
}

// checkCookieDomain refuses a domain attribute that would scope a cookie to
// another site than the page's: it must be the page's host or a parent
// domain of it (never a bare top-level name, and an IP address only as
// itself).
func checkCookieDomain(domain, pageURL string) (string, error) {
	if domain == "" {
		return "", nil
	}
	u, err := url.Parse(pageURL)
	if err != nil {
		return "", err
	}
	host := strings.ToLower(u.Hostname())
	d := strings.ToLower(strings.TrimPrefix(domain, "."))
	switch {
	case d == host:
		return domain, nil
	case net.ParseIP(host) == nil && strings.Contains(d, ".") && strings.HasSuffix(host, "."+d):
		return domain, nil
	}
	return "", fmt.Errorf("domain %s is not the page's host %s or a parent domain of it; set_cookies only sets cookies of the page's own site", quote(domain), host)
}

type setCookiesArgs struct {
	pageArg
	// Cookies is checked by parseCookies, for its own messages.
	Cookies any `json:"cookies"`
}

func (t *toolset) setCookies() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("set_cookies",
			mcp.WithDescription("Set cookies for the page's own site; same name, domain and path replaces."),
			mcp.WithArray("cookies", mcp.Required(), mcp.MinItems(1), mcp.MaxItems(maxSetCookies),
				mcp.Items(map[string]any{
					"type":     "object",
					"required": []string{"name", "value"},
					"properties": map[string]any{
						"name":     map[string]any{"type": "string"},
						"value":    map[string]any{"type": "string"},
						"path":     map[string]any{"type": "string"},
						"domain":   map[string]any{"type": "string", "description": "Default host-only"},
						"secure":   map[string]any{"type": "boolean"},
						"httpOnly": map[string]any{"type": "boolean"},
						"sameSite": map[string]any{"type": "string", "enum": []string{"Strict", "Lax", "None"}},
						"expires":  map[string]any{"type": "number", "description": "Unix seconds"},
					},
				})),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a setCookiesArgs) (*mcp.CallToolResult, error) {
			specs, err := parseCookies(a.Cookies)
			if err != nil {
				return mcp.NewToolResultError("set_cookies: " + err.Error() + "; no cookie was set"), nil
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			u, none, err := cookieURL(cctx, tab)
			if err != nil {
				return nil, cdpError("set_cookies", cctx, tab, t.cfg.CallTimeout, err)
			}
			if none != "" {
				return mcp.NewToolResultError("set_cookies: " + none), nil
			}
			params := make([]*network.CookieParam, 0, len(specs))
			for _, c := range specs {
				domain, err := checkCookieDomain(c.domain, u)
				if err != nil {
					return mcp.NewToolResultError("set_cookies: " + err.Error() + "; no cookie was set"), nil
				}
				params = append(params, &network.CookieParam{
					Name: c.name, Value: c.value, URL: u, Domain: domain, Path: c.path,
					Secure: c.secure, HTTPOnly: c.httpOnly, SameSite: c.sameSite, Expires: cdp.TimeSinceEpoch(c.expires),
				})
			}
			if _, err := chromedp.Call(cctx, network.SetCookies, network.SetCookiesParams{Cookies: params}); err != nil {
				return nil, cdpError("set_cookies", cctx, tab, t.cfg.CallTimeout, err)
			}
			missing, err := unstoredCookies(cctx, u, specs)
			if err != nil {
				return nil, cdpError("set_cookies", cctx, tab, t.cfg.CallTimeout, err)
			}
			if len(missing) > 0 {
				return mcp.NewToolResultErrorf("set_cookies: the browser did not store %s (a secure cookie needs an https page, sameSite None needs secure, expires may be in the past, or the domain is a public suffix); the other cookies were set",
					strings.Join(missing, ", ")), nil
			}
			names := make([]string, len(specs))
			for i, c := range specs {
				names[i] = c.name
			}
			return textResult("Set %d cookie(s) for %s: %s. get_cookies lists them.", len(specs), u, strings.Join(names, ", ")), nil
		}),
	}
}

// unstoredCookies returns the names of the cookies just set that the browser
// does not hold for the page's origin: the browser drops a cookie it refuses
// without an error.
func unstoredCookies(ctx context.Context, pageURL string, specs []cookieSpec) ([]string, error) {
	u, err := url.Parse(pageURL)
	if err != nil {
		return nil, err
	}
	// A cookie whose path is not on the page's URL is not sent to it: ask for
	// the URL of each path set.
	var urls []string
	for _, c := range specs {
		p := u.Scheme + "://" + u.Host + c.path
		if !slices.Contains(urls, p) {
			urls = append(urls, p)
		}
	}
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: urls})
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range specs {
		if !slices.ContainsFunc(res.Cookies, func(k *network.Cookie) bool {
			return k.Name == c.name && k.Path == c.path && k.Value == c.value
		}) {
			missing = append(missing, c.name)
		}
	}
	return missing, nil
}

func (t *toolset) clearCookies() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("clear_cookies",
			mcp.WithDescription("Delete the cookies sent to the page's URL; other sites' stay."),
			namesOption,
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a cookieNamesArgs) (*mcp.CallToolResult, error) {
			sc, err := t.cookieScope(ctx, a, "clear_cookies", " Nothing was deleted.")
			if err != nil {
				return nil, err
			}
			if sc.none != "" {
				return mcp.NewToolResultText(sc.none), nil
			}
			defer sc.cancel()
			tab, cctx, u, cookies := sc.tab, sc.ctx, sc.url, sc.cookies
			if len(cookies) == 0 {
				return textResult("Page %d (%s) has no cookies to delete.", tab.ID, u), nil
			}
			for _, c := range cookies {
				// The domain and path of the very cookie, so only it goes, not
				// a namesake of another domain or path.
				if _, err := chromedp.Call(cctx, network.DeleteCookies, network.DeleteCookiesParams{
					Name: c.Name, URL: u, Domain: c.Domain, Path: c.Path, PartitionKey: c.PartitionKey,
				}); err != nil {
					return nil, cdpError("clear_cookies", cctx, tab, t.cfg.CallTimeout, err)
				}
			}
			left, err := pageCookies(cctx, u)
			if err != nil {
				return nil, cdpError("clear_cookies", cctx, tab, t.cfg.CallTimeout, err)
			}
			if still := filterCookies(left, cookieNames(cookies)); len(still) > 0 {
				return mcp.NewToolResultErrorf("clear_cookies: %s could not be deleted; get_cookies shows them", strings.Join(cookieNames(still), ", ")), nil
			}
			return textResult("Deleted %d cookie(s) of %s: %s.", len(cookies), u, strings.Join(cookieNames(cookies), ", ")), nil
		}),
	}
}

type pdfPageArgs struct {
	pageArg
	FilePath        string `json:"filePath"`
	Landscape       bool   `json:"landscape"`
	PrintBackground bool   `json:"printBackground"`
}

func (t *toolset) pdfPage() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("pdf_page",
			mcp.WithDescription("Print the page to a PDF file. Returns its path and size."),
			mcp.WithString("filePath", mcp.Description("Default page-ID.pdf")),
			mcp.WithBoolean("landscape"),
			mcp.WithBoolean("printBackground"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a pdfPageArgs) (*mcp.CallToolResult, error) {
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			file := a.FilePath
			if file == "" {
				file = fmt.Sprintf("page-%d.pdf", tab.ID)
			}
			// Refuse a bad path before the browser spends time printing.
			if _, err := outputPath(ctx, file); err != nil {
				return mcp.NewToolResultError("pdf_page: " + err.Error()), nil
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			pdf, err := chromedp.Call(cctx, page.PrintToPDF, page.PrintToPDFParams{
				Landscape:       ptr(a.Landscape),
				PrintBackground: ptr(a.PrintBackground),
			})
			if err != nil {
				if strings.Contains(err.Error(), "not implemented") {
					return mcp.NewToolResultError("pdf_page: this browser cannot print to PDF (Chrome prints to PDF only when it runs headless); use take_screenshot instead"), nil
				}
				return nil, cdpError("pdf_page", cctx, tab, t.cfg.CallTimeout, err)
			}
			p, err := writeOutput(ctx, file, pdf.Data)
			if err != nil {
				return mcp.NewToolResultError("pdf_page: " + err.Error()), nil
			}
			return textResult("Saved page %d as PDF: %s (%d bytes).", tab.ID, p, len(pdf.Data)), nil
		}),
	}
}
