package main

import (
	"strings"
	"testing"
)

func TestLimitFlagsRefuseNonsense(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-call-timeout", "0s"}, "--max-call-timeout"},
		{[]string{"--max-conns-per-ip", "0"}, "--max-conns-per-ip"},
		{[]string{"--trusted-proxies", "10.0.0.0/99"}, "--trusted-proxies"},
		{[]string{"--read-header-timeout", "0s"}, "--read-header-timeout"},
		{[]string{"--max-log-bytes-per-tab", "10"}, "--max-log-bytes-per-tab"},
		{[]string{"--max-log-bytes-per-tab", "8MiB", "--max-log-bytes", "4MiB"}, "--max-log-bytes"},
	} {
		args := append([]string{"serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"}, c.args...)
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
