package tools

// emulationTools returns emulate and resize_page.
func (t *toolset) emulationTools() []Tool { return nil }
