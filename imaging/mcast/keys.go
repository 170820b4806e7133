package mcast

// The key rule shared by sender and receiver.

import "errors"

// checkKey: a key is nil (unauthenticated: the caller asked for it) or
// not empty.
func checkKey(key []byte) error {
	if key != nil && len(key) == 0 {
		return errors.New("empty key")
	}
	return nil
}
