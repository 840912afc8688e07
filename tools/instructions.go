package tools

import "fmt"

// Instructions returns the server instructions: what every tool shares,
// said once here so that each tool's schema stays terse (tools/list is
// paid for in tokens on every task). cfg gives the defaults it names.
func Instructions(cfg Config) string {
	cfg.fill()
	return fmt.Sprintf(`You drive the user's own Chrome. Pages you open with new_page (or that the first page tool opens) belong to this session; list_pages shows them.
Read a page with take_snapshot: every element has a uid, stable within a document, for click, fill, hover, drag, upload_file, take_screenshot, get_css_styles and evaluate_script args. Input tools wait for what they set off, then say what changed: a navigation (URL, title), a new page, a dialog, or nothing.
Without an MCP session (the stateless protocol) all agents of a user share one workspace and its selected page: pass the pageId that new_page returned, a handle of your user's, in every call to keep to your own page.
Shared parameters:
- pageId: a page id from list_pages or new_page; default the selected page.
- uid, from_uid, to_uid: an element uid from the latest take_snapshot.
- timeout: milliseconds to wait, default %d, at most %d.
- filePath, filePaths, requestFilePath, responseFilePath: a file in this session's files directory (relative, or absolute inside it); a tool given one writes there instead of answering inline, replacing the file.
- pageSize, pageIdx: paging of lists; pageSize default %d (list_extension_console_messages 50), pageIdx 0 is the oldest.
- includePreservedMessages, includePreservedRequests: also the %d navigations before the current one.
- Booleans default to false unless said otherwise.
- emulate: null or "" resets a part (extraHttpHeaders also {}); userAgent "" restores the browser's own.
Permissions beyond the tool's own: list_pages all and select_page targetId need browser:all-tabs; navigate_page initScript needs browser:script.
Tools come in toolsets (core, input, network, console, emulation, performance, storage, extensions); a tool outside the proxy's or your token's toolsets is not listed, and calling it says how to get it.`,
		cfg.NavigationTimeout.Milliseconds(), cfg.MaxCallTimeout.Milliseconds(), defaultListPageSize, keptNavigations-1)
}
