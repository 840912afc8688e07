package tunnel

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// denied are the CDP methods the agent never relays, whatever the proxy
// asks: they would let the proxy reach beyond the one browser's pages (other
// hosts, the developer's files, the browser process itself). A name ending
// in "." denies the whole domain.
var denied = []string{
	"Target.exposeDevToolsProtocol", // hands CDP to page JavaScript
	"Target.setRemoteLocations",     // makes the browser dial other hosts
	"Browser.close", "Browser.crash", "Browser.crashGpuProcess",
	"Browser.executeBrowserCommand",
	"Browser.setDownloadBehavior", "Page.setDownloadBehavior", // writes files anywhere
	"Page.crash",
	"DOM.setFileInputFiles",       // would upload the developer's local files
	"Extensions.loadUnpacked",     // loads code from a local path
	"Extensions.uninstall",        // removes the developer's extensions
	"Network.loadNetworkResource", // fetches file: and other URLs for the caller
	"Tethering.",                  // opens ports on the developer's machine
	"SystemInfo.",                 // hardware and process details
}

// readOnlyDenied are refused under --read-only: input, page script,
// navigation, and changes to the page, its storage and emulation.
var readOnlyDenied = []string{
	"Input.",
	"Runtime.evaluate", "Runtime.callFunctionOn", "Runtime.compileScript", "Runtime.runScript",
	"Page.navigate", "Page.reload", "Page.navigateToHistoryEntry", "Page.setDocumentContent",
	"Page.addScriptToEvaluateOnNewDocument", "Page.handleJavaScriptDialog",
	"DOM.set", "DOM.removeNode", "DOM.removeAttribute", "DOM.moveTo", "DOM.copyTo", "DOM.undo", "DOM.redo",
	"CSS.set", "CSS.addRule",
	"Emulation.",
	"Network.setCookie", "Network.setCookies", "Network.deleteCookies", "Network.clearBrowserCookies",
	"Network.setExtraHTTPHeaders", "Network.setUserAgentOverride", "Network.emulateNetworkConditions",
	"Storage.clear", "Storage.setCookies", "DOMStorage.setDOMStorageItem", "DOMStorage.removeDOMStorageItem",
	"DOMStorage.clear", "IndexedDB.delete", "IndexedDB.clear", "CacheStorage.delete",
	"Browser.setPermission", "Browser.grantPermissions", "Browser.resetPermissions",
}

// Policy is what the agent lets through, set on the developer's machine;
// the proxy cannot change it.
type Policy struct {
	// AllowOrigins, when not empty, are the only origins navigations
	// (Page.navigate, Target.createTarget) may go to, e.g.
	// "https://app.example.com" or "https://*.example.com"; about:blank is
	// always allowed.
	AllowOrigins []string
	// ReadOnly refuses input, page script, navigation and page changes.
	ReadOnly bool
}

// NormalizeOrigins checks --allow-origin values and returns them as
// scheme://host[:port], lower case. "*." before the host allows its
// subdomains (not the host itself).
func NormalizeOrigins(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, o := range list {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(strings.Replace(o, "*.", "wildcard-.", 1))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("--allow-origin %q is not an origin like https://app.example.com or https://*.example.com", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+strings.Replace(u.Host, "wildcard-.", "*.", 1)))
	}
	return out, nil
}

// request is a CDP request as the agent reads it. Only these keys may
// appear; the agent forwards its own encoding of them, so the browser sees
// exactly what was checked (no duplicate or differently cased keys).
type request struct {
	ID        *int64          `json:"id"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params,omitempty"`
}

// check returns why p refuses the request, or "". When it reads the
// params, it replaces them with its own encoding of what it read, so that
// a duplicate or differently cased key cannot show the browser another
// value than the one checked.
func (p Policy) check(r *request) string {
	m := r.Method
	if matches(denied, m) {
		return m + " is never relayed by the agent: it reaches beyond the browser's pages"
	}
	if p.ReadOnly && matches(readOnlyDenied, m) && !harmlessEval(r) {
		return m + " is refused: the developer's agent runs with --read-only (no input, page script or navigation)"
	}
	if len(p.AllowOrigins) > 0 && (m == "Page.navigate" || m == "Target.createTarget") {
		prm, ok := canonicalParams(r)
		if !ok {
			return m + " is refused: its params are not readable"
		}
		var u string
		if raw, ok := prm["url"]; ok && json.Unmarshal(raw, &u) != nil {
			return m + " is refused: its url is not a string"
		}
		if !p.originAllowed(u) {
			return fmt.Sprintf("navigation to %s is refused: the developer's agent allows only %s (--allow-origin)", originOf(u), strings.Join(p.AllowOrigins, ", "))
		}
	}
	return ""
}

// canonicalParams parses r's params as an object (keys exact, the last of
// duplicates kept) and re-encodes r.Params from that parse.
func canonicalParams(r *request) (map[string]json.RawMessage, bool) {
	prm := map[string]json.RawMessage{}
	if len(r.Params) > 0 {
		if err := json.Unmarshal(r.Params, &prm); err != nil || prm == nil {
			return nil, false
		}
	}
	b, err := json.Marshal(prm)
	if err != nil {
		return nil, false
	}
	r.Params = b
	return prm, true
}

func (p Policy) originAllowed(raw string) bool {
	if raw == "" || raw == "about:blank" {
		return true
	}
	o := originOf(raw)
	for _, a := range p.AllowOrigins {
		if a == o {
			return true
		}
		if scheme, host, ok := strings.Cut(a, "://*."); ok && strings.HasPrefix(o, scheme+"://") && strings.HasSuffix(o, "."+host) {
			return true
		}
	}
	return false
}

// originOf returns scheme://host[:port] of raw (lower case), or a
// placeholder for URLs without an origin (data:, file:, javascript:).
func originOf(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || u.Opaque != "" {
		if err == nil && u.Scheme != "" {
			return "a " + strings.ToLower(u.Scheme) + ": URL"
		}
		return "an unreadable URL"
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	scheme := strings.ToLower(u.Scheme)
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + host + ":" + port
	}
	return scheme + "://" + host
}

func matches(list []string, method string) bool {
	for _, d := range list {
		if strings.HasSuffix(d, ".") && strings.HasPrefix(method, d) {
			return true
		}
		if d == method || (strings.HasPrefix(method, d) && !strings.HasSuffix(d, ".") && isPrefixFamily(d)) {
			return true
		}
	}
	return false
}

// isPrefixFamily marks entries that name a family of methods by prefix
// ("DOM.set" covers DOM.setAttributeValue, DOM.setOuterHTML, ...).
func isPrefixFamily(d string) bool {
	switch d {
	case "DOM.set", "CSS.set", "Storage.clear", "IndexedDB.delete", "IndexedDB.clear", "DOMStorage.clear", "CacheStorage.delete":
		return true
	}
	return false
}

// harmlessEvals are the expressions the proxy's CDP client evaluates on its
// own to learn about a target (chromedp asks "self" on every attach);
// they run no page code, so --read-only lets them through.
var harmlessEvals = map[string]bool{"self": true, "document.visibilityState": true, "document.readyState": true}

// harmlessEval reports whether r is a Runtime.evaluate of one of
// harmlessEvals and nothing else that could run code.
func harmlessEval(r *request) bool {
	if r.Method != "Runtime.evaluate" {
		return false
	}
	prm, ok := canonicalParams(r)
	if !ok {
		return false
	}
	var expr string
	if json.Unmarshal(prm["expression"], &expr) != nil || !harmlessEvals[expr] {
		return false
	}
	for k := range prm {
		switch k {
		case "expression", "returnByValue", "contextId", "uniqueContextId", "silent", "objectGroup":
		default:
			return false
		}
	}
	return true
}
