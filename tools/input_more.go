package tools

// inputTools returns the input tools beyond click and fill: hover, drag,
// fill_form, press_key, type_text, upload_file, handle_dialog.
func (t *toolset) inputTools() []Tool { return nil }

// activity tracks what a tab is busy with, for the wait after an input action.
type activity struct{}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (a *activity) listen(ev any) {}
