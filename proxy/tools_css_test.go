package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

func TestGetCSSStyles(t *testing.T) {
	ch := testchrome.Start(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>CSS</title><style>
.card button { color: rgb(255, 0, 0); padding: 4px 8px; }
#go { font-size: 20px; }
</style><div class="card"><button id="go" style="margin: 3px">Go</button></div><p>plain</p>`)
	}))
	t.Cleanup(srv.Close)
	h := newHarness(t, "")
	c := h.driving("alice", ch.URL)
	mustCall(t, c, "navigate_page", map[string]any{"url": srv.URL})
	snap := mustCall(t, c, "take_snapshot", nil)
	m := regexp.MustCompile(`uid=(\d+) button "Go"`).FindStringSubmatch(snap)
	if m == nil {
		t.Fatalf("no button:\n%s", snap)
	}
	out := mustCall(t, c, "get_css_styles", map[string]any{"uid": m[1]})
	for _, want := range []string{"color: rgb(255, 0, 0)", "font-size: 20px", "padding: 4px 8px 4px 8px", "margin: 3px 3px 3px 3px",
		".card button { color: rgb(255, 0, 0); padding: 4px 8px; }", "#go { font-size: 20px; }", "style attribute { margin: 3px }"} {
		if !strings.Contains(out, want) {
			t.Errorf("get_css_styles lacks %q:\n%s", want, out)
		}
	}
	out = mustCall(t, c, "get_css_styles", map[string]any{"uid": m[1], "properties": []any{"display", "no-such-thing"}})
	if !strings.Contains(out, "display: inline-block") || !strings.Contains(out, "no-such-thing: (not a computed property)") || strings.Contains(out, "font-family") {
		t.Errorf("filtered properties:\n%s", out)
	}
	if text, res := call(t, c, "get_css_styles", map[string]any{"uid": "9999"}); !res.IsError || !strings.Contains(text, "take_snapshot") {
		t.Errorf("unknown uid: %q", text)
	}
}
