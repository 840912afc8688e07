package proxy

import (
	"context"
	"net/http"

	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

const instructions = `You drive the user's own Chrome. Pages you open with new_page (or that the first page tool opens) belong to this session; list_pages shows them. Use take_snapshot to read a page and get element uids for click and fill.`

// buildMCP creates the MCP server with the tools and both transports.
func (s *Server) buildMCP() {
	list := tools.All(s.cfg.Tools)
	hooks := &server.Hooks{}
	mgr := s.cfg.Sessions
	hooks.AddOnRegisterSession(func(ctx context.Context, cs server.ClientSession) {
		if p, ok := auth.FromContext(ctx); ok && cs.SessionID() != "" {
			mgr.Open(cs.SessionID(), p.UserID)
		}
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, cs server.ClientSession) {
		mgr.Close(cs.SessionID())
	})
	// tools/list hides the tools the caller's token lacks the permission
	// for; a call of one is refused by the session middleware, which names
	// the permission.
	hooks.AddAfterListTools(tools.HideForbidden(list))
	s.mcp = server.NewMCPServer("mcp-browser-proxy", s.cfg.Version,
		server.WithToolCapabilities(false),
		server.WithRecovery(),
		server.WithHooks(hooks),
		server.WithToolHandlerMiddleware(mgr.Middleware),
		server.WithInstructions(instructions),
	)
	tools.Register(s.mcp, list)

	s.sse = server.NewSSEServer(s.mcp,
		server.WithKeepAliveInterval(s.cfg.KeepAlive),
		server.WithSessionIDGenerator(func(_ context.Context, r *http.Request) (string, error) {
			p, _ := auth.FromContext(r.Context())
			return mgr.NewID(p.UserID), nil
		}),
		// guard (security.go) checks Host first, with --allowed-hosts.
		server.WithSSEDisableLocalhostProtection(len(s.cfg.Security.AllowedHosts) > 0),
	)
	s.stream = server.NewStreamableHTTPServer(s.mcp,
		server.WithSessionIdManagerResolver(idResolver{mgr}),
		server.WithSessionIdleTTL(mgr.IdleTimeout()),
		server.WithHeartbeatInterval(s.cfg.KeepAlive),
		server.WithDisableLocalhostProtection(len(s.cfg.Security.AllowedHosts) > 0),
	)
}

// idResolver hands the streamable transport session IDs that the session
// manager reserves for the calling user.
type idResolver struct{ mgr *session.Manager }

func (r idResolver) ResolveSessionIdManager(req *http.Request) server.SessionIdManager {
	owner := ""
	if req != nil {
		if p, ok := auth.FromContext(req.Context()); ok {
			owner = p.UserID
		}
	}
	return idManager{mgr: r.mgr, owner: owner}
}

type idManager struct {
	mgr   *session.Manager
	owner string
}

func (m idManager) Generate() string { return m.mgr.NewID(m.owner) }

func (m idManager) Validate(id string) (bool, error) {
	if _, ok := m.mgr.Owner(id); !ok {
		return false, session.ErrNotFound
	}
	return false, nil
}

func (m idManager) Terminate(id string) (bool, error) {
	m.mgr.Close(id)
	return false, nil
}
