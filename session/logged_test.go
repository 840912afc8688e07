package session

import (
	"bytes"
	"testing"

	"github.com/rs/zerolog"
)

// TestSessionLogLineAsBefore checks that a session's log line, written on
// the manager's log with the session's fields added, is the line a logger
// of the session's own (With().Str("user").Str("session")) wrote, with a
// base logger that has context fields of its own.
func TestSessionLogLineAsBefore(t *testing.T) {
	var got, want bytes.Buffer
	base := func(w *bytes.Buffer) zerolog.Logger {
		return zerolog.New(w).With().Str("service", "proxy").Int("pid", 7).Logger()
	}
	s := &Session{ID: "sid1", UserID: "alice"}
	log := base(&got)
	s.logged(log.Info()).Str("reason", "idle").Msg("session closed")
	own := base(&want).With().Str("user", "alice").Str("session", "sid1").Logger()
	own.Info().Str("reason", "idle").Msg("session closed")
	if got.String() != want.String() {
		t.Fatalf("line %s, want %s", got.String(), want.String())
	}
}
