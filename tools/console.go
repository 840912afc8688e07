package tools

// consoleTools returns list_console_messages and get_console_message.
func (t *toolset) consoleTools() []Tool { return nil }

// consoleLog collects a tab's console messages.
type consoleLog struct{}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (c *consoleLog) listen(ev any) {}
