package tools

// dialogState tracks a tab's pending JavaScript dialog.
type dialogState struct{}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (d *dialogState) listen(ev any) {}
