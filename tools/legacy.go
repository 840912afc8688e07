package tools

import (
	"context"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// legacy adapts a handler that reads its arguments itself; it goes once
// every tool binds an argument struct.
func legacy(fn server.ToolHandlerFunc) Handler { return Handler{call: fn} }

func pageOfReq(ctx context.Context, req mcp.CallToolRequest) (*Tab, error) {
	return pageOf(ctx, req.GetInt("pageId", 0))
}

func requiredPageReq(ctx context.Context, req mcp.CallToolRequest) (Workspace, int, error) {
	return requiredPage(ctx, req.GetInt("pageId", 0))
}

func (t *toolset) timeoutArgReq(req mcp.CallToolRequest, def time.Duration) (time.Duration, error) {
	return t.timeoutArg(req.GetFloat("timeout", 0), def)
}
