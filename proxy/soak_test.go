//go:build soak

package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// Soak shape: 10 users, each with a Chromium of their own (one browser URL
// belongs to one user), 5 MCP sessions each (2 legacy SSE, 2 Streamable
// HTTP sessions, 1 stateless client on the user's default workspace): 50
// sessions. Every session calls navigate_page, take_snapshot, click and
// evaluate_script in turn, one call every 1-2 s, for soakCalls once all have
// opened their tab; two Chromiums are killed and restarted on their ports on
// the way. The whole test takes about two minutes.
const (
	soakUsers       = 10
	soakPerUser     = 5
	soakCalls       = 60 * time.Second // from the moment all 50 are connected
	soakOutage      = 3 * time.Second  // how long a killed Chromium stays down
	soakCallBound   = 30 * time.Second // client-side bound of every call; none may reach it
	soakIdleTimeout = 8 * time.Second
)

// soakCall is the record of one tool call.
type soakCall struct {
	user, session int
	tool          string
	start, end    time.Time
	ok            bool
	text          string
	err           error
}

// clearFailure lists what a failed call may say: the browser is down
// (retryable), the connection dropped during the call, a uid from before
// the reset is stale, or the (restarting) browser did not answer within the
// call's bound. Anything else is an unclear error.
var clearFailure = regexp.MustCompile(`BROWSER_UNAVAILABLE|lost the connection to the browser|browser connection dropped|is gone|take_snapshot|take a new snapshot|did not attach|did not answer within`)

// TestSoakKillRestart runs the soak (about a minute; it is not skipped in
// -short: CI runs it). It asserts: every call ends within its client-side
// bound and either succeeds or fails with a clear tool error (no transport
// error); only the users whose Chromium was down see failures; each real
// session of a restarted browser gets the restart notice exactly once; no
// registration is lost; and after every client is closed the session count
// is back to its start within the idle bound. It logs the figures of
// BENCHMARKS.md "Reliability (issue 5)".
func TestSoakKillRestart(t *testing.T) {
	h := newFaultHarness(t, faultPool(), session.Config{
		BrowserWait: 2 * time.Second, IdleTimeout: soakIdleTimeout, MaxSessionsPerUser: soakPerUser,
	})
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); h.mgr.Run(runCtx) }()
	t.Cleanup(func() { stopRun(); <-runDone })

	pages := faultPages(t).URL
	started := time.Now()
	chromes := make([]*testchrome.Chrome, soakUsers)
	tokens := make([]string, soakUsers)
	errs := make([]error, soakUsers)
	var starting sync.WaitGroup
	for u := range soakUsers {
		// Tabs of one Chromium share at most two renderers: 50 tabs on a
		// 2-core machine stay light.
		starting.Go(func() { chromes[u], errs[u] = testchrome.Launch(t, "--renderer-process-limit=2") })
	}
	starting.Wait()
	for u := range soakUsers {
		if errs[u] != nil {
			t.Fatal(errs[u])
		}
		tokens[u] = h.token(user(u))
		if reg := h.register(tokens[u], user(u), chromes[u].URL); reg.BrowserStatus != "connected" {
			t.Fatalf("register %s: %+v", user(u), reg)
		}
	}
	baseSessions := h.mgr.Count()
	t.Logf("soak set-up: %d Chromiums registered in %v; %d sessions before", soakUsers, time.Since(started), baseSessions)

	type sess struct {
		user, id int
		kind     transportKind
		c        *client.Client
		notices  int
	}
	var (
		mu    sync.Mutex
		calls []soakCall
		all   []*sess
		wg    sync.WaitGroup
	)
	soakStart := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	all = make([]*sess, soakUsers*soakPerUser)
	for i := range all {
		kind := []transportKind{viaSSE, viaStreamable, viaSSE, viaStreamable, viaStateless}[i/soakUsers%soakPerUser]
		all[i] = &sess{user: i % soakUsers, id: i, kind: kind}
	}
	t.Cleanup(func() { // after every goroutine has ended
		for _, s := range all {
			if s.c != nil {
				s.c.Close()
			}
		}
	})
	// Warm-up, outside the figures: every session connects and opens its
	// tab, four sessions at a time, then starts calling at a random moment
	// of its first 2 s. Fifty tabs created in the same second on a loaded
	// 2-core machine (CI runs other packages' Chromiums alongside) kept a
	// Chromium from answering Target.createTarget within the 10 s CDP
	// bound; that burst is start-up cost, not what the soak measures.
	// Sessions connect inside the warm-up, so that none waits in the queue
	// longer than the idle timeout.
	sem := make(chan struct{}, 4)
	warmErrs := make([]string, len(all))
	var warming sync.WaitGroup
	warming.Add(len(all))
	for i, s := range all {
		wg.Go(func() {
			sem <- struct{}{}
			c, err := dialMCP(h.URL, s.kind, map[string]string{"Authorization": "Bearer " + tokens[s.user]})
			if err != nil {
				warmErrs[i] = "connect: " + err.Error()
			}
			s.c = c
			for try := 0; try < 3 && c != nil; try++ {
				r := callWithin(s.c, "evaluate_script", map[string]any{"function": "() => 1"}, soakCallBound)
				if warmErrs[i] = ""; r.err == nil && !r.isErr {
					break
				}
				warmErrs[i] = fmt.Sprintf("err=%v %q", r.err, r.text)
			}
			<-sem
			warming.Done()
			if warmErrs[i] != "" {
				return
			}
			sleepCtx(ctx, time.Duration(rand.IntN(2000))*time.Millisecond)
			uid := ""
			for step := 0; ctx.Err() == nil; step++ {
				var tool string
				var args map[string]any
				switch step % 4 {
				case 0:
					tool, args = "navigate_page", map[string]any{"url": pages + "/"}
				case 1:
					tool, args = "take_snapshot", nil
				case 2:
					if uid == "" {
						tool, args = "take_snapshot", nil
					} else {
						tool, args = "click", map[string]any{"uid": uid}
					}
				case 3:
					tool, args = "evaluate_script", map[string]any{"function": fmt.Sprintf("() => %d + 1", step)}
				}
				start := time.Now()
				r := callWithin(s.c, tool, args, soakCallBound)
				rec := soakCall{user: s.user, session: s.id, tool: tool, start: start, end: time.Now(), ok: r.err == nil && !r.isErr, text: r.text, err: r.err}
				if strings.Contains(r.text, "browser restarted") {
					s.notices++
				}
				if tool == "take_snapshot" && rec.ok {
					if m := soakButtonUID.FindStringSubmatch(r.text); m != nil {
						uid = m[1]
					}
				}
				mu.Lock()
				calls = append(calls, rec)
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(1000+rand.IntN(1000)) * time.Millisecond):
				}
			}
		})
	}

	// Two outages, on the browsers of user 0 and user 1.
	type outage struct {
		user                     int
		killed, left, listening  time.Time
		reconnected, firstCallOK time.Time
	}
	// The schedule counts from the moment every session is calling: the
	// outages at 1/5 and 3/5 of soakCalls, and at least 10 s of calls
	// after the last restart, however slow the machine.
	warming.Wait()
	for i, e := range warmErrs {
		if e != "" {
			cancel()
			wg.Wait()
			t.Fatalf("warm-up of session %d failed: %s", i, e)
		}
	}
	phase := time.Now()
	t.Logf("soak warm-up: %d sessions opened their tab in %v", len(all), phase.Sub(soakStart).Round(time.Millisecond))
	outages := []*outage{{user: 0}, {user: 1}}
	for i, o := range outages {
		sleepCtx(ctx, time.Until(phase.Add(soakCalls*time.Duration(2*i+1)/5)))
		b, _ := h.pool.Get(user(o.user))
		o.killed = time.Now()
		chromes[o.user].Kill()
		for b.Status().State == browserpool.StateConnected && time.Since(o.killed) < 10*time.Second {
			time.Sleep(2 * time.Millisecond)
		}
		o.left = time.Now()
		sleepCtx(context.Background(), soakOutage)
		chromes[o.user].Restart(t)
		o.listening = time.Now()
		for b.Status().State != browserpool.StateConnected && time.Since(o.listening) < 10*time.Second {
			time.Sleep(2 * time.Millisecond)
		}
		o.reconnected = time.Now()
	}
	sleepCtx(ctx, max(time.Until(phase.Add(soakCalls)), time.Until(outages[len(outages)-1].reconnected.Add(10*time.Second))))
	cancel()
	soakEnd := time.Now()
	wg.Wait()

	// Every call: within its bound, and a success or a clear tool error.
	failed := make([]int, soakUsers)
	total := make([]int, soakUsers)
	var unclear []string
	for _, c := range calls {
		total[c.user]++
		if c.ok {
			continue
		}
		failed[c.user]++
		t.Logf("failed: %s session %d %s at +%v after %v: %.200q", user(c.user), c.session, c.tool,
			c.start.Sub(soakStart).Round(time.Millisecond), c.end.Sub(c.start).Round(time.Millisecond), c.text)
		if c.err != nil || !clearFailure.MatchString(c.text) {
			unclear = append(unclear, fmt.Sprintf("%s session %d %s after %v: err=%v %q", user(c.user), c.session, c.tool, c.end.Sub(c.start).Round(time.Millisecond), c.err, c.text))
		}
	}
	if len(unclear) > 0 {
		t.Errorf("%d calls failed without a clear tool error (transport error, client bound, or unexpected text):\n%s", len(unclear), strings.Join(unclear, "\n"))
	}
	for u := range soakUsers {
		if total[u] < 20 {
			t.Errorf("%s made only %d calls", user(u), total[u])
		}
		if u >= len(outages) && failed[u] > 0 {
			t.Errorf("%s, whose browser never went down, had %d failed calls", user(u), failed[u])
		}
	}
	for _, o := range outages {
		for _, c := range calls {
			if c.user == o.user && c.ok && c.end.After(o.listening) && (o.firstCallOK.IsZero() || c.end.Before(o.firstCallOK)) {
				o.firstCallOK = c.end
			}
		}
		if o.firstCallOK.IsZero() {
			t.Errorf("%s: no successful call after the restart", user(o.user))
			continue
		}
		t.Logf("outage of %s at +%v: detect (kill -> state leaves connected) %v; reconnect (listening -> connected) %v; recover (listening -> first successful call) %v; calls failed %d of %d",
			user(o.user), o.killed.Sub(soakStart).Round(time.Millisecond), o.left.Sub(o.killed).Round(time.Millisecond), o.reconnected.Sub(o.listening).Round(time.Millisecond),
			o.firstCallOK.Sub(o.listening).Round(time.Millisecond), failed[o.user], total[o.user])
	}
	calls0 := 0
	for u := range soakUsers {
		calls0 += total[u]
	}
	t.Logf("soak: %d sessions, %d calls in %v, %d failed (all on the two restarted browsers)", len(all), calls0, soakEnd.Sub(soakStart).Round(time.Millisecond), failed[0]+failed[1])
	// How far the other users' calls are from the 10 s CDP bound: the
	// margin of the "no failure elsewhere" assertion on a loaded machine.
	var others []time.Duration
	for _, c := range calls {
		if c.user >= len(outages) {
			others = append(others, c.end.Sub(c.start))
		}
	}
	slices.Sort(others)
	if n := len(others); n > 0 {
		t.Logf("soak: the %d calls of the other users took p50 %v, p99 %v, max %v", n,
			others[n/2].Round(time.Millisecond), others[n*99/100].Round(time.Millisecond), others[n-1].Round(time.Millisecond))
	}

	// The browsers' state transitions, for the record, and how often each
	// browser came back (a health check that times out on a loaded machine
	// also reconnects).
	reconnects := make([]int, soakUsers)
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if !strings.Contains(line, `"message":"browser state"`) {
			continue
		}
		if strings.Contains(line, `"from":"connecting"`) && strings.Contains(line, `"to":"connected"`) {
			continue // the first connect: one line per user
		}
		t.Log(line)
		for u := range soakUsers {
			if strings.Contains(line, `"user":"`+user(u)+`"`) && strings.Contains(line, `"to":"connected"`) {
				reconnects[u]++
			}
		}
	}

	// Each real session of a restarted browser was told, once per
	// reconnect at most (a session that made no call in between two
	// reconnects is told once for both); the others never.
	for _, s := range all {
		if s.kind == viaStateless {
			continue // one default workspace per user, shared
		}
		// At least once if the session had a page before the kill (a call
		// succeeded) and made a call after its browser came back.
		lo := 0
		for _, o := range outages {
			mine := func(ok func(c soakCall) bool) bool {
				return slices.ContainsFunc(calls, func(c soakCall) bool { return c.session == s.id && ok(c) })
			}
			if o.user == s.user && mine(func(c soakCall) bool { return c.ok && c.end.Before(o.killed) }) &&
				mine(func(c soakCall) bool { return c.start.After(o.reconnected) }) {
				lo = 1
			}
		}
		if s.notices < lo || s.notices > reconnects[s.user] {
			t.Errorf("%s session %d (%s) got the restart notice %d times; its browser reconnected %d times", user(s.user), s.id, s.kind, s.notices, reconnects[s.user])
		}
	}

	// No registration lost: every user's status still shows their browser.
	for u := range soakUsers {
		var st UserStatus
		if resp := h.do(http.MethodGet, "/api/users/"+user(u)+"/status", tokens[u], nil, &st); resp.StatusCode != http.StatusOK ||
			st.BrowserURL != chromes[u].URL || st.BrowserStatus != "connected" {
			t.Errorf("%s after the soak: %d %+v, want connected at %s", user(u), resp.StatusCode, st, chromes[u].URL)
		}
	}

	// No session leaked: close every client; the count returns to its start
	// within the idle bound (stateless workspaces expire after the idle
	// timeout; the others close with their client).
	closed := time.Now()
	for _, s := range all {
		s.c.Close()
	}
	bound := soakIdleTimeout + 2*soakIdleTimeout/4 + 5*time.Second
	for h.mgr.Count() != baseSessions {
		if time.Since(closed) > bound {
			t.Fatalf("%d sessions open %v after every client closed, want %d", h.mgr.Count(), bound, baseSessions)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("sessions back to %d %v after the clients closed (idle timeout %v)", baseSessions, time.Since(closed).Round(time.Millisecond), soakIdleTimeout)
	if n := slices.IndexFunc(calls, func(c soakCall) bool { return c.end.Sub(c.start) >= soakCallBound }); n >= 0 {
		t.Errorf("a call reached the client-side bound: %+v", calls[n])
	}
}

var soakButtonUID = regexp.MustCompile(`uid=(\S+) button`)

func user(u int) string { return fmt.Sprintf("user%02d", u) }

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
