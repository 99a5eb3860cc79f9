package sni

import "testing"

func TestMatchPrefersExactThenWildcardThenDefault(t *testing.T) {
	var tab Table[string]
	for p, v := range map[string]string{"api.example.com": "api", "*.example.com": "web", "Admin.Example.org": "admin"} {
		if err := tab.Add(p, v); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, want string
		ok         bool
	}{
		{"api.example.com", "api", true},
		{"API.example.com.", "api", true},
		{"www.example.com", "web", true},
		{"a.b.example.com", "", false}, // a wildcard stands for one label
		{"example.com", "", false},
		{"admin.example.org", "admin", true},
		{"", "", false},
	}
	for _, c := range cases {
		if got, ok := tab.Match(c.name); got != c.want || ok != c.ok {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	tab.SetDefault("fallback")
	if got, ok := tab.Match("other.test"); got != "fallback" || !ok {
		t.Errorf("with a default, Match(other.test) = %q, %v", got, ok)
	}
	if got, _ := tab.Match(""); got != "fallback" {
		t.Errorf("no SNI goes to the default, got %q", got)
	}
}

func TestAddRefusesBadAndDuplicatePatterns(t *testing.T) {
	var tab Table[int]
	if err := tab.Add("*.example.com", 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"*.EXAMPLE.com", "", "*.com", "a.*.example.com", "*", "bad name.example", "x*.example.com"} {
		if err := tab.Add(p, 2); err == nil {
			t.Errorf("Add(%q) was accepted", p)
		}
	}
}
