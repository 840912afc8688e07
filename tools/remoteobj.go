package tools

import (
	"github.com/chromedp/cdproto/runtime"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools/internal/remoteobj"
)

// The console's values as text, with this package's caps; the rendering
// itself is remoteobj's.

func argKind(o *runtime.RemoteObject) string { return remoteobj.Kind(o) }

// formatConsoleArgs renders the arguments of a console call as DevTools
// prints them (remoteobj.ConsoleArgs).
func formatConsoleArgs(args []*runtime.RemoteObject) string {
	return remoteobj.ConsoleArgs(args, maxCollectedText)
}

// remoteText renders a value of the page from what the event carries
// (remoteobj.Text), strings up to maxCollectedText.
func remoteText(o *runtime.RemoteObject, full bool) string {
	return remoteobj.Text(o, full, maxCollectedText)
}

// keptText is remoteText cut to maxKeptText, to keep: a long string is only
// decoded as far as it is kept, and its marker counts what the page logged.
func keptText(o *runtime.RemoteObject, full bool) string {
	s := remoteobj.Text(o, full, maxKeptText)
	if o != nil && o.Type == runtime.RemoteObjectTypeString && len(s) <= maxKeptText+len(remoteobj.CutMarker(1_000_000_000)) {
		return s // cut while decoding already, with its marker
	}
	return cutText(s, maxKeptText)
}
