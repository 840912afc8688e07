package tools

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
)

// logString feeds s a console.log of str.
func logString(t *testing.T, s *TabState, str string) {
	t.Helper()
	v, err := json.Marshal(str)
	if err != nil {
		t.Fatal(err)
	}
	s.Listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeLog,
		Args: []*runtime.RemoteObject{{Type: runtime.RemoteObjectTypeString, Value: v}}})
}

func TestLogBudgetBoundsTabsAndTotal(t *testing.T) {
	const perTab, total = 256 << 10, 512 << 10
	b := NewLogBudget(perTab, total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := NewTabState("QUIET", WithLogBudget(b))
	quiet.Bind(ctx)
	logString(t, quiet, "a quiet message")
	loud := make([]*TabState, 6)
	loudCtx, loudCancel := context.WithCancel(ctx)
	big := strings.Repeat("x", 10240)
	for i := range loud {
		loud[i] = NewTabState(target.ID("LOUD"+strconv.Itoa(i)), WithLogBudget(b))
		loud[i].Bind(loudCtx)
		for range 200 {
			logString(t, loud[i], big)
		}
		if n := loud[i].console.acct.bytes.Load(); n > perTab/2 {
			t.Errorf("tab %d keeps %d console bytes, over its bound %d", i, n, perTab/2)
		}
	}
	if used := b.Used(); used > total {
		t.Errorf("all tabs keep %d bytes, over the total %d", used, total)
	}
	// The biggest logs paid for the total, not the quiet one.
	if msgs, _, _ := quiet.console.list(true, func(*consoleMsg) bool { return true }); len(msgs) != 1 {
		t.Errorf("the quiet tab lost its message to the loud ones: %d kept", len(msgs))
	}
	msgs, _, _ := loud[0].console.list(true, func(*consoleMsg) bool { return true })
	if len(msgs) == 0 || !strings.Contains(msgs[0].v.args[0].text, "…[cut 6,144 bytes]") {
		t.Errorf("a 10 kB string is not cut with a marker counting the cut bytes: %d messages", len(msgs))
	}
	// Closed tabs give their bytes back.
	loudCancel()
	deadline := time.Now().Add(10 * time.Second)
	for b.Used() != quiet.console.acct.bytes.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("closed tabs still count: %d bytes used, the quiet tab keeps %d", b.Used(), quiet.console.acct.bytes.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNetworkEntriesKeepCutHeaders(t *testing.T) {
	s := NewTabState("T")
	h := network.Headers{"X-Big": strings.Repeat("h", 5000)}
	for i := range 100 {
		h["X-"+strconv.Itoa(i)] = "v"
	}
	s.Listen(&network.EventRequestWillBeSent{RequestID: "1", Request: &network.Request{URL: "http://a.test/" + strings.Repeat("u", 9000), Method: "GET", Headers: h}})
	got, ok, _ := s.network.get(1)
	if !ok {
		t.Fatal("request not kept")
	}
	if len(got.reqHeaders) > maxHeadersKept+1 || !strings.Contains(got.reqHeaders["…"].(string), "more headers") {
		t.Errorf("%d headers kept, want at most %d and a note", len(got.reqHeaders), maxHeadersKept)
	}
	if !strings.Contains(got.url, "…[cut ") || len(got.url) > maxKeptText+40 {
		t.Errorf("a 9 kB URL kept as %d bytes without a cut marker", len(got.url))
	}
	if v, _ := got.reqHeaders["X-Big"].(string); v != "" && !strings.Contains(v, "…[cut 3,976 bytes]") {
		t.Errorf("a 5 kB header value is not cut with its marker: %d bytes", len(v))
	}
}
