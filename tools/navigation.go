package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

type navigatePageArgs struct {
	pageArg
	Type        string  `json:"type"`
	URL         string  `json:"url"`
	IgnoreCache bool    `json:"ignoreCache"`
	InitScript  string  `json:"initScript"`
	Timeout     float64 `json:"timeout"`
}

func (t *toolset) navigatePage() Tool {
	return Tool{
		Perm: auth.PermWrite,
		// initScript runs JavaScript in the page, as evaluate_script does.
		ArgPerms: map[string]string{"initScript": auth.PermScript},
		Tool: mcp.NewTool("navigate_page",
			mcp.WithDescription("Load url, or go back, forward or reload, and wait for the page. Returns URL and title."),
			mcp.WithString("type", mcp.Enum("url", "back", "forward", "reload"), mcp.Description("Default url")),
			mcp.WithString("url"),
			mcp.WithBoolean("ignoreCache", mcp.Description("On reload")),
			mcp.WithString("initScript", mcp.Description("JS run before the page's, this load only")),
			mcp.WithNumber("timeout"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a navigatePageArgs) (*mcp.CallToolResult, error) {
			kind, target := a.Type, a.URL
			if kind == "" {
				kind = "url"
			}
			var do func(context.Context) error
			switch kind {
			case "url":
				if target == "" {
					return mcp.NewToolResultError(`navigate_page with type "url" needs a url`), nil
				}
				if err := t.cfg.Navigation.Check(target); err != nil {
					return mcp.NewToolResultError("navigate_page: " + err.Error()), nil
				}
				do = func(cctx context.Context) error { return navigateURL(cctx, target) }
			case "back":
				do = func(cctx context.Context) error { return navigateHistory(cctx, -1) }
			case "forward":
				do = func(cctx context.Context) error { return navigateHistory(cctx, +1) }
			case "reload":
				ignore := a.IgnoreCache
				do = func(cctx context.Context) error {
					_, err := chromedp.Call(cctx, page.Reload, page.ReloadParams{IgnoreCache: &ignore})
					return err
				}
			default:
				return mcp.NewToolResultErrorf(`navigate_page: unknown type %q; use "url", "back", "forward" or "reload"`, kind), nil
			}
			timeout, err := t.timeoutArg(a.Timeout, t.cfg.NavigationTimeout)
			if err != nil {
				return nil, err
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			return t.navigate(ctx, tab, timeout, do, a.InitScript)
		}),
	}
}

// navigate runs do on tab and waits for the navigation it starts to finish
// loading, up to timeout, then reports where the page is.
func (t *toolset) navigate(ctx context.Context, tab *Tab, timeout time.Duration, do func(context.Context) error, initScript string) (*mcp.CallToolResult, error) {
	cctx, cancel := callCtx(ctx, tab, timeout)
	defer cancel()
	if initScript != "" {
		added, err := chromedp.Call(cctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: initScript})
		if err != nil {
			return nil, cdpError("navigate_page", cctx, tab, timeout, err)
		}
		defer func() {
			rctx, rcancel := callCtx(context.WithoutCancel(ctx), tab, t.cfg.CallTimeout)
			defer rcancel()
			_, _ = chromedp.Call(rctx, page.RemoveScriptToEvaluateOnNewDocument, page.RemoveScriptToEvaluateOnNewDocumentParams(added))
		}()
	}
	mark, reqs := tab.State.mark(), tab.State.activity.mark()
	if err := do(cctx); err != nil {
		var ue userError
		if errors.As(err, &ue) {
			return mcp.NewToolResultError("navigate_page: " + ue.msg), nil
		}
		return nil, cdpError("navigate_page", cctx, tab, timeout, err)
	}
	_, finished := tab.State.settle(cctx, mark, timeout)
	var ready readiness
	if finished {
		ready = t.waitReady(ctx, tab, reqs)
	}
	loc := ready.loc
	if loc == nil {
		loc = t.location(ctx, tab)
	}
	if len(loc) != 2 {
		loc = []string{"(unknown)", ""}
	}
	if !finished {
		return textResult("Page %d is at %s but had not finished loading after %s.", tab.ID, loc[0], timeout), nil
	}
	return textResult("Page %d is at %s (title %s).%s", tab.ID, loc[0], quote(loc[1]), ready.note(t.cfg.ReadyCap)), nil
}

// location asks where the page is: its URL and title.
func (t *toolset) location(ctx context.Context, tab *Tab) []string {
	// A call of its own: the navigation's context has run out when the
	// load did not finish.
	lctx, lcancel := callCtx(ctx, tab, min(t.cfg.CallTimeout, locationTimeout))
	defer lcancel()
	where, err := chromedp.Call(lctx, runtime.Evaluate, runtime.EvaluateParams{
		Expression: "JSON.stringify([location.href, document.title])", ReturnByValue: ptr(true),
	})
	var loc []string
	if err == nil && where.Result != nil {
		var s string
		if json.Unmarshal(where.Result.Value, &s) == nil {
			_ = json.Unmarshal([]byte(s), &loc)
		}
	}
	return loc
}

// locationTimeout bounds the question where the page is, after a load.
const locationTimeout = 2 * time.Second

// allowedSchemes are the URL schemes tools may always load.
var allowedSchemes = map[string]bool{"http": true, "https": true, "about": true, "data": true}

// chromeSchemes are the browser-internal schemes NavPolicy.AllowChromeURLs
// opens; view-source: also needs its inner URL to pass.
var chromeSchemes = map[string]bool{"chrome": true, "devtools": true, "chrome-extension": true, "chrome-untrusted": true, "view-source": true}

// NavPolicy decides which URLs navigate_page and new_page may load. The zero
// value allows http, https, about and data URLs to any host. javascript:
// URLs are always refused (evaluate_script runs scripts, under its own
// permission). The policy checks the URL a tool is asked to load, not where
// the page goes from there (links, redirects, scripts).
type NavPolicy struct {
	// AllowFileURLs allows file: URLs (the browser machine's files).
	AllowFileURLs bool
	// AllowChromeURLs allows chrome:, devtools:, chrome-extension:,
	// chrome-untrusted: and view-source: URLs.
	AllowChromeURLs bool
	// DenyHosts are host globs (path.Match syntax, case-insensitive) that
	// http and https URLs may not load, e.g. "example.com", "*.internal";
	// matched on the host as the browser will request it (router.ParseURL).
	DenyHosts []string
	// Page is the page policy that the browser enforces on every request
	// of a session's pages; the tools refuse what it refuses up front.
	Page *router.PagePolicy
}

// Validate checks the DenyHosts globs; errors name the bad one.
func (p NavPolicy) Validate() error {
	for _, g := range p.DenyHosts {
		if _, err := path.Match(strings.ToLower(g), ""); err != nil || strings.TrimSpace(g) == "" {
			return fmt.Errorf("deny host %q is not a host glob like example.com or *.internal", g)
		}
	}
	return nil
}

// Check reports whether a tool may load raw, and if not why and what to do.
func (p NavPolicy) Check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("%q is not an absolute URL; give one like http://127.0.0.1:8080/", raw)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "javascript":
		return errors.New("javascript: URLs are not allowed; use evaluate_script to run code in the page")
	case scheme == "file":
		if !p.AllowFileURLs {
			return errors.New("file: URLs are not allowed on this proxy (the operator can enable them with --allow-file-urls)")
		}
		return nil
	case chromeSchemes[scheme]:
		if !p.AllowChromeURLs {
			return fmt.Errorf("%s: URLs are not allowed on this proxy (the operator can enable them with --allow-chrome-urls)", scheme)
		}
		if scheme == "view-source" {
			inner := raw[len(u.Scheme)+1:]
			if err := p.Check(inner); err != nil {
				return fmt.Errorf("view-source of a refused URL: %w", err)
			}
		}
		return nil
	case !allowedSchemes[scheme]:
		return fmt.Errorf("URLs with scheme %q are not allowed; use http, https, about or data", u.Scheme)
	}
	if scheme == "http" || scheme == "https" {
		deny := &router.PagePolicy{DenyHosts: p.DenyHosts}
		if p.Page != nil {
			deny = p.Page
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := deny.Check(ctx, raw); err != nil {
			return fmt.Errorf("%w; navigate somewhere else", err)
		}
	}
	return nil
}

func navigateURL(ctx context.Context, target string) error {
	res, err := chromedp.Call(ctx, page.Navigate, page.NavigateParams{URL: target})
	if err != nil {
		return err
	}
	if res.ErrorText != "" {
		return userError{fmt.Sprintf("loading %s failed: %s", target, res.ErrorText)}
	}
	return nil
}

func navigateHistory(ctx context.Context, delta int64) error {
	h, err := chromedp.Call(ctx, page.GetNavigationHistory, cdp.Empty{})
	if err != nil {
		return err
	}
	i := h.CurrentIndex + delta
	if i < 0 || i >= int64(len(h.Entries)) {
		if delta < 0 {
			return userError{"there is no previous page in this page's history"}
		}
		return userError{"there is no next page in this page's history"}
	}
	_, err = chromedp.Call(ctx, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: h.Entries[i].ID})
	return err
}

type waitForArgs struct {
	pageArg
	// Text is a string or an array of strings.
	Text    any     `json:"text"`
	Timeout float64 `json:"timeout"`
}

func (t *toolset) waitFor() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("wait_for",
			mcp.WithDescription("Wait until one of the texts is visible in the page. Returns which."),
			mcp.WithAny("text", mcp.Required(),
				func(s map[string]any) {
					s["anyOf"] = []any{
						map[string]any{"type": "string"},
						map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "minItems": 1},
					}
				}),
			mcp.WithNumber("timeout"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a waitForArgs) (*mcp.CallToolResult, error) {
			texts, err := stringOrList(a.Text)
			if err != nil {
				return mcp.NewToolResultError("wait_for: " + err.Error()), nil
			}
			timeout, err := t.timeoutArg(a.Timeout, t.cfg.NavigationTimeout)
			if err != nil {
				return nil, err
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			return t.waitText(ctx, tab, texts, timeout)
		}),
	}
}

// waitTextJS resolves with the first text found in document.body.innerText,
// checking again on every DOM change, or with null after ms.
const waitTextJS = `(texts, ms) => new Promise(resolve => {
  const find = () => { const t = document.body ? document.body.innerText : ''; return texts.find(x => t.includes(x)); };
  let hit = find();
  if (hit !== undefined) return resolve(hit);
  const obs = new MutationObserver(() => { const h = find(); if (h !== undefined) { obs.disconnect(); clearTimeout(timer); resolve(h); } });
  obs.observe(document, {subtree: true, childList: true, characterData: true});
  const timer = setTimeout(() => { obs.disconnect(); resolve(null); }, ms);
})`

func (t *toolset) waitText(ctx context.Context, tab *Tab, texts []string, timeout time.Duration) (*mcp.CallToolResult, error) {
	deadline := time.Now().Add(timeout)
	cctx, cancel := callCtx(ctx, tab, timeout+2*time.Second)
	defer cancel()
	expr := fmt.Sprintf("(%s)(%s, %d)", waitTextJS, jsonValue(texts), timeout.Milliseconds())
	for {
		res, err := chromedp.Call(cctx, runtime.Evaluate, runtime.EvaluateParams{
			Expression: expr, AwaitPromise: ptr(true), ReturnByValue: ptr(true),
		})
		// A navigation destroys the context the promise ran in: try again
		// in the new document until the deadline.
		if err == nil && res.ExceptionDetails == nil {
			var hit *string
			_ = json.Unmarshal(res.Result.Value, &hit)
			if hit != nil {
				return textResult("Found %s on page %d.", quote(*hit), tab.ID), nil
			}
			break
		}
		if time.Now().After(deadline) || cctx.Err() != nil {
			if err != nil {
				return nil, cdpError("wait_for", cctx, tab, timeout, err)
			}
			break
		}
		remaining := time.Until(deadline)
		expr = fmt.Sprintf("(%s)(%s, %d)", waitTextJS, jsonValue(texts), remaining.Milliseconds())
		select {
		case <-time.After(50 * time.Millisecond):
		case <-cctx.Done():
		}
	}
	return mcp.NewToolResultErrorf("wait_for: none of %s appeared on page %d within %s; take_snapshot to see what the page shows", jsonValue(texts), tab.ID, timeout), nil
}

func stringOrList(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil, fmt.Errorf("text must not be empty")
		}
		return []string{x}, nil
	case []any:
		var out []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("text must be a string or an array of non-empty strings")
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("text must list at least one string")
		}
		return out, nil
	default:
		return nil, fmt.Errorf("text must be a string or an array of strings")
	}
}

func resultText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}
