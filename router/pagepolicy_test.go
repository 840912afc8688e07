package router

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

// TestPagePolicySpellings checks that every spelling a browser reads as
// the loopback address, or as a denied host, is refused, and that loopback
// on other ports stays allowed.
func TestPagePolicySpellings(t *testing.T) {
	p := &PagePolicy{
		DenyHosts: []string{"10.1.2.3", "*.internal", "example.com"},
		Endpoints: func() []ProtectedEndpoint {
			return []ProtectedEndpoint{{Port: 9222, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}
		},
		LocalAddrs: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.7")} },
	}
	refused := []string{
		"http://127.0.0.1:9222/json/version", "HTTP://LOCALHOST:9222/", "http://localhost.:9222/",
		"http://127.1:9222/", "http://0x7f.1:9222/", "http://0x7f000001:9222/", "http://2130706433:9222/",
		"http://017700000001:9222/", "http://0177.0.0.1:9222/", "http://[::1]:9222/", "http://[::ffff:127.0.0.1]:9222/",
		"http:/127.0.0.1:9222/", `http:\\127.0.0.1:9222\json`, "http://127。0。0。1:9222/", "http://127．0．0．1:9222/",
		" http://user:pw@127.0.0.1:9222/", "ws://127.0.0.1:9222/devtools/browser/x", "http://127.0.0.2:9222/",
		"http://192.0.2.7:9222/", "http://0.0.0.0:9222/", "http://127.0.0.1:9222\t/",
		"http://10.1.2.3/", "http://0xa.1.2.3/", "http://167838211/", "https://EXAMPLE.com./", "http://db.internal:80/",
		"http://ＥＸＡＭＰＬＥ.com/", "http://exa%6dple.com/",
	}
	for _, u := range refused {
		if err := p.Check(context.Background(), u); err == nil {
			t.Errorf("Check(%q) = nil, want refused", u)
		}
	}
	allowed := []string{"http://127.0.0.1:8080/", "http://localhost:3000/app", "https://example.org/", "about:blank", "data:text/html,x", "http://192.0.2.8:9222/"}
	for _, u := range allowed {
		if err := p.Check(context.Background(), u); err != nil {
			t.Errorf("Check(%q) = %v, want allowed", u, err)
		}
	}
	pats := strings.Join(p.FetchPatterns(), " ")
	for _, want := range []string{"*://*:9222/*", "*://example.com/*", "*://*.internal/*"} {
		if !strings.Contains(pats, want) {
			t.Errorf("FetchPatterns %q lack %q", pats, want)
		}
	}
}

// FuzzParseURL checks that the parser never panics and that its canonical
// host is a fixed point.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"http://127.1:9222/", `http:\\0x7f.1`, "ws://[::ffff:7f00:1]:1/", "http://a。b/", "http://%31%32%37.0.0.1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, special, err := ParseURL(raw)
		if !special || err != nil {
			return
		}
		again, err := BrowserHost(u.Host)
		if strings.Contains(u.Host, ":") {
			again, err = BrowserHost("[" + u.Host + "]")
		}
		if err != nil || again != u.Host {
			t.Fatalf("BrowserHost(%q) = %q, %v; want itself", u.Host, again, err)
		}
	})
}
