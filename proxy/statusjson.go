package proxy

import (
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
)

// The status answer is the most frequent API answer (dashboards and IDE
// plugins poll it). encoding/json reached its fields by reflection, called
// time.Time's MarshalJSON and then validated and compacted what that
// returned: a fifth of the route's own CPU. appendJSON writes the same
// bytes directly (TestUserStatusJSONAsEncoded), for the common answer;
// anything else goes to encoding/json as before.

// statusBufs holds the buffers the answers are written from.
var statusBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeStatus answers u as c.JSON(code, u) does, byte for byte.
func writeStatus(c echo.Context, code int, u *UserStatus) error {
	bp := statusBufs.Get().(*[]byte)
	b, ok := u.appendJSON((*bp)[:0])
	if !ok {
		statusBufs.Put(bp)
		return c.JSON(code, u)
	}
	err := c.JSONBlob(code, b)
	if cap(b) <= 4096 {
		*bp = b
		statusBufs.Put(bp)
	}
	return err
}

// appendJSON appends u as json.Encoder.Encode writes it (HTML-escaped,
// with its newline). It returns false, with b unusable, for an answer it
// leaves to encoding/json: one with a tunnel, a string that needs
// escaping, or a time MarshalJSON refuses.
func (u *UserStatus) appendJSON(b []byte) ([]byte, bool) {
	if u.Tunnel != nil {
		return b, false
	}
	ok := true
	str := func(key, v string) {
		b = append(b, key...)
		if !plainJSON(v) {
			ok = false
			return
		}
		b = append(append(append(b, '"'), v...), '"')
	}
	str(`{"userId":`, u.UserID)
	str(`,"browserURL":`, u.BrowserURL)
	str(`,"browserStatus":`, u.BrowserStatus)
	if u.BrowserError != "" {
		str(`,"browserError":`, u.BrowserError)
	}
	b = strconv.AppendInt(append(b, `,"activeSessions":`...), int64(u.ActiveSessions), 10)
	b = append(b, `,"lastActivity":`...)
	if u.LastActivity == nil {
		b = append(b, "null"...)
	} else {
		// MarshalJSON is MarshalText quoted; both refuse the same times.
		var err error
		if b, err = u.LastActivity.AppendText(append(b, '"')); err != nil {
			return b, false
		}
		b = append(b, '"')
	}
	if u.Managed {
		b = append(b, `,"managed":true`...)
	}
	return append(b, "}\n"...), ok
}

// plainJSON reports whether encoding/json writes s as it is between quotes:
// printable ASCII without the characters it escapes (quote, backslash, and
// <, >, & under HTML escaping).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
