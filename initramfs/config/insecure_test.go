package config

import (
	"errors"
	"strings"
	"testing"
)

// TestInsecure: shoal.insecure=unsigned is accepted from the kernel
// command line only, and with that one value.
func TestInsecure(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		want          error
	}{
		{"unsigned", "shoal.repo=http://s/repo/ shoal.image=a shoal.insecure=unsigned", nil},
		{"other value", "shoal.repo=http://s/repo/ shoal.image=a shoal.insecure=yes", ErrInvalid},
		{"absent", "shoal.repo=http://s/repo/ shoal.image=a", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCmdline(tc.cmdline)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Finish(); !errors.Is(err, tc.want) {
				t.Errorf("Finish = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := ParseConf(strings.NewReader("insecure = unsigned\n")); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseConf(insecure = unsigned) = %v, want ErrSyntax: shoal.conf may not set it", err)
	}
}
