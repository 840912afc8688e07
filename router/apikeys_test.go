package router

import (
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
