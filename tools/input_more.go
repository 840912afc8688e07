package tools

// inputTools returns the input tools beyond click and fill: hover, drag,
// fill_form, press_key, type_text, upload_file, handle_dialog.
func (t *toolset) inputTools() []Tool { return nil }
