// Package testbolt holds what crash tests use to judge a bbolt file left
// behind by a killed process.
package testbolt

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Check opens the bbolt file at path read-only (waiting up to 5s for a
// lock another process may still hold) and runs bbolt's consistency check
// on it. It returns the first problem, saying whether the file did not
// open or did not pass the check.
func Check(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("the store does not open: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("consistency check: %w", err)
		}
		return nil
	})
}
