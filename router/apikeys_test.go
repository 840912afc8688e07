package router

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestIsLocked(t *testing.T) {
	_, path := openTest(t)
	_, err := OpenBolt(path)
	if err == nil || !IsLocked(err) {
		t.Fatalf("second OpenBolt: %v, want a locked error", err)
	}
	if IsLocked(errors.New("other")) {
		t.Error("IsLocked(other) = true")
	}
}

// TestAPIKeyRecordWithoutToolsets: a key stored before keys had toolsets
// decodes with nil Toolsets, every toolset, as it had.
func TestAPIKeyRecordWithoutToolsets(t *testing.T) {
	var rec apiKeyRecord
	if err := json.Unmarshal([]byte(`{"id":"0123456789abcdef","userId":"alice","perms":["browser:read"],"secretHash":"","createdAt":"2026-01-01T00:00:00Z"}`), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.key().Toolsets != nil {
		t.Errorf("toolsets %#v; want nil", rec.key().Toolsets)
	}
}
