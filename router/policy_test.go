package router

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// fakeResolver answers from a table; unknown names are not found.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	list, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestPolicyDefaultRanges(t *testing.T) {
	p := DefaultPolicy()
	for _, ok := range []string{"127.0.0.1", "127.3.4.5", "::1", "10.1.2.3", "172.16.0.9", "172.31.255.1", "192.168.1.10", "100.64.0.1", "fd12:3456::1", "::ffff:127.0.0.1"} {
		if err := p.CheckAddr(netip.MustParseAddr(ok)); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, tc := range []struct{ addr, why string }{
		{"169.254.169.254", "169.254.0.0/16"},
		{"169.254.0.1", "169.254.0.0/16"},
		{"::ffff:169.254.169.254", "169.254.0.0/16"}, // IPv4-mapped
		{"fe80::1", "fe80::/10"},
		{"fd00:ec2::254", "fd00:ec2::254/128"}, // inside the allowed fc00::/7
		{"fd20:ce::254", "fd20:ce::254/128"},
		{"100.100.100.200", "100.100.100.200/32"}, // inside the allowed 100.64/10
		{"8.8.8.8", "no allowed range"},
		{"2001:db8::1", "no allowed range"},
		{"172.32.0.1", "no allowed range"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"64:ff9b::a9fe:a9fe", "NAT64"}, // 169.254.169.254 through NAT64
	} {
		err := p.CheckAddr(netip.MustParseAddr(tc.addr))
		var de *DeniedError
		if !errors.As(err, &de) {
			t.Errorf("%s: error %v, want *DeniedError", tc.addr, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: error %q does not say %q", tc.addr, err, tc.why)
		}
	}
}

func TestPolicyCustomLists(t *testing.T) {
	p, err := NewPolicy([]string{"0.0.0.0/0", "::/0"}, []string{"127.0.0.0/8", "10.9.9.9"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckAddr(netip.MustParseAddr("203.0.113.7")); err != nil {
		t.Errorf("public address refused by allow-all: %v", err)
	}
	for _, denied := range []string{"127.0.0.1", "10.9.9.9", "0.0.0.0"} {
		if err := p.CheckAddr(netip.MustParseAddr(denied)); err == nil {
			t.Errorf("%s allowed; the deny list (or the unspecified rule) must win", denied)
		}
	}
	if err := p.CheckAddr(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("replaced deny list still refuses 169.254.169.254: %v", err)
	}
	for _, bad := range [][]string{{"10.0.0.0/33"}, {"not-a-cidr"}, {"10.0.0.0/8", "300.1.1.1"}} {
		_, err := NewPolicy(bad, nil, nil, nil)
		if err == nil || !strings.Contains(err.Error(), bad[len(bad)-1]) {
			t.Errorf("NewPolicy(%q) error %v, want one naming the bad entry", bad, err)
		}
	}
}

func TestPolicyResolve(t *testing.T) {
	res := fakeResolver{
		"browser.test":   {"10.0.0.5"},
		"rebind.test":    {"127.0.0.1", "169.254.169.254"}, // one bad address spoils the name
		"mapped.test":    {"::ffff:10.0.0.6"},
		"public.example": {"203.0.113.9"},
	}
	p, err := NewPolicy(DefaultAllowCIDRs(), DefaultDenyCIDRs(), DefaultDenyHostNames(), res)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := p.Resolve(ctx, "Browser.Test."); err != nil || len(got) != 1 || got[0].String() != "10.0.0.5" {
		t.Errorf("Resolve(browser.test) = %v, %v", got, err)
	}
	if got, err := p.Resolve(ctx, "mapped.test"); err != nil || got[0].String() != "10.0.0.6" {
		t.Errorf("Resolve(mapped.test) = %v, %v; want the address unmapped", got, err)
	}
	for _, tc := range []struct{ host, want string }{
		{"rebind.test", "rebind.test (169.254.169.254)"},
		{"public.example", "203.0.113.9"},
		{"metadata.google.internal", "cloud metadata"},
		{"METADATA.google.internal.", "cloud metadata"},
		{"missing.test", "does not resolve"},
		{"[fd00:ec2::254]", "fd00:ec2::254"},
	} {
		_, err := p.Resolve(ctx, tc.host)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%s) error %v, want one containing %q", tc.host, err, tc.want)
		}
	}
	// CheckURL never repeats credentials of the URL.
	err = p.CheckURL(ctx, "wss://user:pw-SECRET@rebind.test/devtools/browser/x?token=tok-SECRET")
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("CheckURL error %v: want a refusal without the credentials", err)
	}
	if err := p.CheckURL(ctx, "http://browser.test:9222"); err != nil {
		t.Errorf("CheckURL(browser.test) = %v", err)
	}
}

// TestPolicyResolveURLLooseIPv4: IPv4 in the forms a browser accepts is an
// address, checked as one, never a name sent to a resolver.
func TestPolicyResolveURLLooseIPv4(t *testing.T) {
	p, err := NewPolicy(DefaultAllowCIDRs(), DefaultDenyCIDRs(), nil, fakeResolver{"browser.test": {"10.0.0.5", "::ffff:10.0.0.6"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for raw, want := range map[string]string{
		"http://127.1:9222":              "127.0.0.1",
		"http://0x7f.0.0.1:9222":         "127.0.0.1",
		"http://[::ffff:127.0.0.1]:9222": "127.0.0.1",
		"http://browser.test:9222":       "10.0.0.5 10.0.0.6",
	} {
		addrs, err := p.ResolveURL(ctx, raw)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("ResolveURL(%s) = %v, %v; want %s", raw, got, err, want)
		}
	}
	// 0xa9.0xfe.0xa9.0xfe is the metadata address 169.254.169.254.
	if _, err := p.ResolveURL(ctx, "http://0xa9.0xfe.0xa9.0xfe:80"); err == nil || !strings.Contains(err.Error(), "169.254.169.254") {
		t.Errorf("the metadata address in hex: %v", err)
	}
}
