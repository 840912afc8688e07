package proxy

import (
	"bytes"
	"encoding/json"
)

// sseData returns the data field of the event in p (from "data:" to the
// end), or nil.
func sseData(p []byte) []byte {
	i := bytes.Index(p, []byte("data:"))
	if i < 0 || (i > 0 && p[i-1] != '\n') {
		return nil
	}
	return bytes.TrimPrefix(p[i+len("data:"):], []byte(" "))
}

// isAnswer reports whether data, one JSON-RPC message, is an answer (it
// has a result or an error) rather than a request or a notification (a
// method). It reads only up to the first of those keys.
func isAnswer(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		switch t {
		case "result", "error":
			return true
		case "method":
			return false
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}
