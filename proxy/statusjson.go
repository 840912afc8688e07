package proxy

import (
	"strconv"
	"sync"
	"unicode/utf8"

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
	if c.Request().URL.RawQuery != "" || c.Echo().Debug {
		// c.JSON indents for ?pretty (and in debug mode): any query goes
		// to it, so that the answer is c.JSON's whatever the query says.
		v := *u
		return c.JSON(code, &v)
	}
	bp := statusBufs.Get().(*[]byte)
	b, ok := u.appendJSON((*bp)[:0])
	if !ok {
		statusBufs.Put(bp)
		// A copy goes to encoding/json: handing it u would move the
		// caller's UserStatus to the heap on every answer, the common
		// ones too.
		v := *u
		return c.JSON(code, &v)
	}
	// c.JSONBlob(code, b), with the header's canonical name indexed
	// directly rather than checked and canonicalised by Get and Set.
	res := c.Response()
	if h := res.Header(); len(h[echo.HeaderContentType]) == 0 || h[echo.HeaderContentType][0] == "" {
		h[echo.HeaderContentType] = []string{echo.MIMEApplicationJSON}
	}
	res.WriteHeader(code)
	_, err := res.Write(b)
	if cap(b) <= 4096 {
		*bp = b
		statusBufs.Put(bp)
	}
	return err
}

// appendJSON appends u as json.Encoder.Encode writes it (HTML-escaped,
// with its newline). It returns false, with b unusable, for an answer it
// leaves to encoding/json: one with a tunnel, a string that is not ASCII,
// or a time MarshalJSON refuses.
func (u *UserStatus) appendJSON(b []byte) ([]byte, bool) {
	if u.Tunnel != nil {
		return b, false
	}
	ok := true
	str := func(key, v string) {
		var fine bool
		b, fine = appendJSONString(append(b, key...), v)
		ok = ok && fine
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

// appendJSONString appends s quoted as encoding/json writes an ASCII
// string with HTML escaping (its appendString); it returns false, with b
// unusable, for a string that is not ASCII.
func appendJSONString(b []byte, s string) ([]byte, bool) {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return b, false
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default: // other control characters, and <, >, & (HTML)
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	return append(append(b, s[start:]...), '"'), true
}
