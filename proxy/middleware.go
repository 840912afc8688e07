package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// newRequestID is the generator of X-Request-Id for requests that bring
// none: 32 letters, as echo's own, from the runtime's ChaCha8 source
// rather than crypto/rand through a buffered reader, a sixth of the cost.
// Request IDs are no secret: a client may send its own. Each draw is a
// uniform number below 52^11, written as 11 base-52 digits (letters): three
// draws for 32 letters, not one per letter.
func newRequestID() string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	const perDraw, below = 11, 52 * 52 * 52 * 52 * 52 * 52 * 52 * 52 * 52 * 52 * 52 // 52^11 < 2^63
	var b [32]byte
	for i := 0; i < len(b); {
		n := rand.Uint64N(below)
		for j := 0; j < perDraw && i < len(b); j++ {
			b[i] = letters[n%52]
			n /= 52
			i++
		}
	}
	return string(b[:])
}

// assignRequestID gives every answer its X-Request-Id: the client's own
// when clientRequestID keeps it, or a new one (newRequestID). The
// header's name is canonical already: the maps are indexed directly, not
// through Get and Set, which check and canonicalise it on every request.
func assignRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var rid string
		if v := c.Request().Header[echo.HeaderXRequestID]; len(v) > 0 && clientRequestID(v[0]) {
			rid = v[0]
		}
		if rid == "" {
			rid = newRequestID()
		}
		c.Response().Header()[echo.HeaderXRequestID] = []string{rid}
		return next(c)
	}
}

// clientRequestID says whether a client's X-Request-Id is kept: at most 64
// letters, digits, '.', '_' and '-' (a UUID, our own IDs, most tracers').
// It goes into every log and audit line of the request, so anything longer
// or stranger is replaced rather than carried.
func clientRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// requestID is the request's X-Request-Id (assignRequestID).
func requestID(c echo.Context) string {
	if v := c.Response().Header()[echo.HeaderXRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// principalOf returns the caller that authenticate (or authNone) found. It
// lives in the request's context only, where the MCP transports and the
// tools read it too: one copy, and no echo store to allocate per request.
func principalOf(c echo.Context) (auth.Principal, bool) {
	return auth.FromContext(c.Request().Context())
}

// requestLog logs one line per request, without query strings (they can hold
// session IDs) and never any header. A tool call is one line, the call's
// own (session's tool_call, with the request ID): the line of its HTTP
// request is left out (written at debug level) when a call of it was
// logged (POST /mcp answers after the call) or, on POST /message, whose
// 202 comes before the call runs, when the message is a tools/call.
func (s *Server) requestLog() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			r := c.Request()
			var head *headBody
			if r.Method == http.MethodPost && r.URL.Path == "/message" {
				head = &headBody{ReadCloser: r.Body}
				r.Body = head
			}
			var note *session.RequestNote // only MCP messages carry tool calls
			if r.Method == http.MethodPost && (r.URL.Path == "/mcp" || r.URL.Path == "/message") {
				note = &session.RequestNote{RequestID: requestID(c)}
				c.SetRequest(r.WithContext(session.WithRequestNote(r.Context(), note)))
			}
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			// The level is chosen before the event is taken: an event taken
			// and not sent never goes back to zerolog's pool.
			level := zerolog.InfoLevel
			switch {
			case status >= 500:
				level = zerolog.ErrorLevel
			case note.Called(),
				head != nil && status == http.StatusAccepted && rpcMethod(head.buf) == "tools/call":
				level = zerolog.DebugLevel
			}
			ev := s.log.WithLevel(level)
			ev = ev.Str("request_id", requestID(c)).Str("method", c.Request().Method).
				Str("path", c.Request().URL.Path).Int("status", status).Dur("latency", time.Since(start))
			if p, ok := principalOf(c); ok {
				ev = ev.Str("user", p.UserID)
			}
			for _, k := range []string{forwardedKey, forwardedToKey} { // shared mode (cluster.go)
				if id, ok := c.Get(k).(string); ok {
					ev = ev.Str(k, id)
				}
			}
			ev.Msg("http")
			return nil
		}
	}
}

// headMax is how much of a POST /message body requestLog keeps to find its
// JSON-RPC method; clients write the method before the params.
const headMax = 256

// headBody keeps the first headMax bytes the handler reads of a body.
type headBody struct {
	io.ReadCloser
	buf []byte
}

func (h *headBody) Read(p []byte) (int, error) {
	n, err := h.ReadCloser.Read(p)
	if room := headMax - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(n, room)]...)
	}
	return n, err
}

// rpcMethod returns the method of the JSON-RPC message that b starts, or ""
// when b (the message, or its first bytes) does not name one before its
// params. It reads tokens only up to the method, with plainRequest's
// pooled decoders: encoding/json's Decoder allocated some 25 times per
// message here (an error value at the end of every value it skips). A
// name or method that is not valid UTF-8 reads as "" (encoding/json would
// have replaced the bytes).
func rpcMethod(b []byte) string {
	h := headDecoderOf(b)
	defer h.put()
	d := h.d
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return ""
	}
	for d.PeekKind() == '"' {
		k, err := d.ReadValue() // the quoted name, valid until the next read
		if err != nil {
			return ""
		}
		switch {
		case isName(k, "method"):
			if d.PeekKind() != '"' {
				return ""
			}
			v, err := d.ReadValue()
			if err != nil {
				return ""
			}
			m := v[1 : len(v)-1]
			if bytes.IndexByte(v, '\\') >= 0 {
				if m, err = jsontext.AppendUnquote(nil, v); err != nil {
					return ""
				}
			}
			if name, ok := methodNames[string(m)]; ok {
				return name // no copy of the common ones
			}
			return string(m)
		case isName(k, "params"):
			return ""
		}
		if d.SkipValue() != nil {
			return ""
		}
	}
	return ""
}

// methodNames are the methods rpcMethod returns without a copy.
var methodNames = func() map[string]string {
	m := map[string]string{}
	for _, name := range []mcp.MCPMethod{mcp.MethodInitialize, mcp.MethodPing, mcp.MethodToolsList,
		mcp.MethodToolsCall, mcp.MethodSetLogLevel, mcp.MethodResourcesList, mcp.MethodPromptsList} {
		m[string(name)] = string(name)
	}
	for _, name := range []string{"notifications/initialized", "notifications/cancelled"} {
		m[name] = name
	}
	return m
}()

// isName reports whether quoted, a JSON string as written, is name once
// unquoted.
func isName(quoted jsontext.Value, name string) bool {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return len(quoted) == len(name)+2 && string(quoted[1:len(quoted)-1]) == name
	}
	u, err := jsontext.AppendUnquote(nil, quoted)
	return err == nil && string(u) == name
}

// authenticate verifies the bearer credential, a JWT of this proxy (or of
// --jwt-jwks-url's provider), an access token of the OAuth issuer (one whose
// iss is that issuer; see verifyOAuth) or an API key (mbp_...), and puts the principal in the echo context and in the
// request's context (where the MCP transports read it). Credentials are read
// only from the Authorization header, never from the query string. API keys
// are looked up in the store on every request, so a revoked key fails at
// once, and so does a token minted with one (its apikey_id claim).
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if s.deleteByKnowledge(r) {
			return next(c)
		}
		tok, err := auth.BearerToken(r.Header.Get("Authorization"))
		if err != nil {
			return apiError(http.StatusUnauthorized, CodeUnauthorized,
				"send Authorization: Bearer <token>; get one from POST /api/register or `mcp-browser-proxy token issue --user <you>`")
		}
		var p auth.Principal
		isKey := auth.IsAPIKey(tok)
		switch {
		case isKey:
			p, err = auth.VerifyAPIKey(r.Context(), s.cfg.Store, tok)
		case s.cfg.OAuth.Verifier != nil && s.cfg.OAuth.Verifier.IsIssuedBy(tok):
			if p, err = s.verifyOAuth(c, tok); err != nil {
				return err
			}
		default:
			p, err = s.cfg.Auth.VerifyContext(r.Context(), tok)
			if err == nil && p.KeyID != "" {
				// A token minted with an API key lives only as long as it.
				if err = auth.CheckAPIKeyLive(r.Context(), s.cfg.Store, p.KeyID); errors.Is(err, auth.ErrInvalidToken) {
					markAuthFailed(c, authRevokedKeyJWT)
					s.deny(c, p.UserID, "token of a revoked API key")
					return &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, bearer: "invalid_token", Message: "the token was minted with an API key that is revoked; register again with a valid credential to get a new one"}
				}
			}
		}
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) && !errors.Is(err, auth.ErrExpiredToken) {
				// The store failed; the error names at most the key ID.
				return fmt.Errorf("authenticate: %w", err)
			}
			if isKey {
				markAuthFailed(c, authInvalidKey)
				s.deny(c, "", "invalid API key")
				return &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, bearer: "invalid_token", Message: "the API key is not valid (unknown, revoked or mistyped); create one with `mcp-browser-proxy apikey create --user <you>`"}
			}
			s.deny(c, "", "invalid token")
			if errors.Is(err, auth.ErrExpiredToken) {
				markAuthFailed(c, authExpired)
				return &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, bearer: "invalid_token", Message: "the token has expired; issue a new one"}
			}
			return &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, bearer: "invalid_token", Message: "the token is not valid for this proxy; issue a new one"}
		}
		setPrincipal(c, p)
		return next(c)
	}
}

// setPrincipal makes p the caller of the request, in the request's context
// (principalOf).
func setPrincipal(c echo.Context, p auth.Principal) {
	c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
}

// deleteByKnowledge lets a DELETE /mcp without credentials end a live
// session: MCP clients (mcp-go's among them) send their closing DELETE
// without custom headers, and the 128-bit session ID is itself the secret.
func (s *Server) deleteByKnowledge(r *http.Request) bool {
	if r.Method != http.MethodDelete || r.URL.Path != "/mcp" || r.Header.Get("Authorization") != "" {
		return false
	}
	_, ok := s.cfg.Sessions.Owner(r.Header.Get("Mcp-Session-Id"))
	return ok
}

// mcpGuard enforces the MCP routes' rules: X-User-Id must be the token's
// user, a session ID must exist and belong to the caller, and new sessions
// respect the limits.
func (s *Server) mcpGuard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		p, authed := principalOf(c)
		if h := r.Header.Get("X-User-Id"); h != "" && authed && h != p.UserID {
			markDenied(c, denyUserMismatch)
			s.deny(c, p.UserID, "X-User-Id differs from the token's user")
			return apiError(http.StatusForbidden, CodeForbidden, "X-User-Id does not match the user of the bearer token; send your own user ID or omit the header")
		}
		var sid string
		switch r.URL.Path {
		case "/message":
			sid = sessionIDParam(r)
			if sid == "" {
				return apiError(http.StatusBadRequest, CodeInvalidRequest, "missing sessionId query parameter; use the endpoint URL from the SSE stream's endpoint event")
			}
		case "/mcp":
			sid = r.Header.Get("Mcp-Session-Id")
		}
		if sid != "" {
			owner, ok := s.cfg.Sessions.Owner(sid)
			if !ok {
				markDenied(c, denyUnknownSession)
				s.deny(c, p.UserID, "unknown or expired MCP session")
				return apiError(http.StatusNotFound, CodeNotFound, "unknown or expired MCP session; reconnect your MCP client to get a new one")
			}
			if authed && owner != p.UserID {
				markDenied(c, denySessionOwner)
				s.deny(c, p.UserID, "session belongs to another user")
				return apiError(http.StatusForbidden, CodeForbidden, "this MCP session belongs to another user")
			}
			if r.URL.Path == "/mcp" {
				// A streamable session with a GET stream open or a request
				// in flight is in use: never evicted, never stale.
				defer s.cfg.Sessions.Hold(sid)()
			}
		}
		// A GET /mcp without a session ID opens a session too (mcp-go makes
		// one for the stream), so it counts against the session limits.
		getOpens := r.URL.Path == "/mcp" && r.Method == http.MethodGet && sid == ""
		if authed && (getOpens || s.opensSession(c, sid)) {
			if err := s.cfg.Sessions.CheckOpen(p.UserID); err != nil {
				var le *session.LimitError
				if errors.As(err, &le) {
					markDenied(c, denySessionLimit)
					s.deny(c, p.UserID, "session limit")
					return &APIError{Status: http.StatusTooManyRequests, Code: CodeLimitExceeded, Message: le.Msg, RetryAfter: 30}
				}
				return err
			}
		}
		return next(c)
	}
}

// opensSession reports whether the request would open a new MCP session: an
// SSE stream, or a streamable initialize. It buffers the body to look.
func (s *Server) opensSession(c echo.Context, sid string) bool {
	r := c.Request()
	switch {
	case r.URL.Path == "/sse":
		return true
	case r.URL.Path == "/mcp" && r.Method == http.MethodPost && sid == "":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return false
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			Method string `json:"method"`
		}
		opens := json.Unmarshal(body, &msg) == nil && msg.Method == "initialize"
		c.Set(notOpeningKey, !opens)
		return opens
	}
	return false
}

// deny writes an audit line for a refused request.
func (s *Server) deny(c echo.Context, user, reason string) {
	s.cfg.Audit.Warn().Bool("audit", true).Str("event", "denied").Str("request_id", requestID(c)).
		Str("user", user).Str("method", c.Request().Method).Str("path", c.Request().URL.Path).
		Str("reason", reason).Send()
}

// requirePerm refuses a caller without perm, which what (e.g. "registering a
// browser") needs; the refusal is audited.
func (s *Server) requirePerm(c echo.Context, perm, what string) error {
	p, _ := principalOf(c)
	if p.Has(perm) {
		return nil
	}
	s.deny(c, p.UserID, "the credential lacks "+perm)
	return apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("%s needs the %s permission, which your credential lacks; ask an admin for a token or API key with --perms %s", what, perm, perm))
}

// forbidUnlessSelf refuses acting for another user without admin.
func (s *Server) forbidUnlessSelf(c echo.Context, userID string) error {
	p, _ := principalOf(c)
	if p.CanActAs(userID) {
		return nil
	}
	s.deny(c, p.UserID, "acting for another user")
	return apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("your token is for %s; only that user or an admin may do this", p.UserID))
}
