package tools

// networkTools returns list_network_requests and get_network_request.
func (t *toolset) networkTools() []Tool { return nil }

// networkLog collects a tab's network requests.
type networkLog struct{}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (n *networkLog) listen(ev any) {}
