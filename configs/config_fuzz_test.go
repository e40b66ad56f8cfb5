package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzLoad feeds arbitrary YAML files to Load. Load must never panic; when it
// succeeds every value must satisfy its key's rules, and loading the same file
// again must give the same result.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range append(seeds, exampleFile) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "~", "[]", "- a", "cache:", "kafka:", "kafka: x", "cache: {expire: {time: 10s}}",
		"cache: {expire.time: 10s, expire: {time: 20s}}", "kafka: {topics: {regex: x}}",
		"kafka: {\"\": 1}", "\"a/b\": 1", "a: &a {b: *a}", "base: &b {size: 5}\ncache: {<<: *b}",
		"ws: {max.message.size: 9223372036854775807GiB}", "cache: {size: 1e300}", "node: {name: 2024-01-02}",
		"kafka: {linger.ms: [1, [2]], topics: [1, true, 2.5]}", "log: {level: !!binary aW5mbw==}",
	} {
		f.Add([]byte(s))
	}
	// One file per fuzzing process, rewritten for every input.
	p := filepath.Join(f.TempDir(), "fuzz.yaml")
	byName := schemaByName()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(Options{File: p, Environ: noEnv})
		if err != nil {
			if c != nil {
				t.Errorf("Load returned a Config with its error %v", err)
			}
			if err.Error() == "" {
				t.Error("empty error message")
			}
			if errors.Is(err, ErrUnknownKey) && !strings.Contains(err.Error(), "unknown key") {
				t.Errorf("unknown-key error does not say so: %v", err)
			}
			return
		}
		for name, v := range fields(c) {
			k := byName[name]
			var n int64
			switch x := v.(type) {
			case int:
				n = int64(x)
			case int64:
				n = x
			case time.Duration:
				n = int64(x)
			case string:
				if k.Allowed != nil && !slices.Contains(k.Allowed, x) {
					t.Errorf("%s = %q, not one of %v", name, x, k.Allowed)
				}
				continue
			default:
				continue
			}
			if n < k.Min {
				t.Errorf("%s = %v, below its minimum %d", name, v, k.Min)
			}
		}
		if c.Kafka.Properties == nil {
			t.Error("Kafka.Properties is nil")
		}
		again, err := Load(Options{File: p, Environ: noEnv})
		if err != nil {
			t.Fatalf("second Load failed: %v", err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Errorf("Load is not deterministic:\n%+v\n%+v", c, again)
		}
	})
}

// FuzzParseExtraOpts: ParseExtraOpts never panics, and what it accepts
// survives being written back out with quotes.
func FuzzParseExtraOpts(f *testing.F) {
	for _, s := range []string{"", "-Da=1", "-Da=1 -Db=2", `-Da="x y"`, `-Da='say "hi"'`, "-D=1", "x", `-Da="`, "-Da=b=c\t-Dc=\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseExtraOpts(s)
		if err != nil {
			if !strings.Contains(err.Error(), ExtraOptsEnv) {
				t.Errorf("error does not name %s: %v", ExtraOptsEnv, err)
			}
			return
		}
		var parts []string
		for name, value := range m {
			if name == "" {
				t.Errorf("empty name accepted from %q", s)
			}
			if strings.ContainsAny(name, `"'`) || strings.Contains(value, "'") && strings.Contains(value, `"`) ||
				strings.ContainsAny(name, "= \t\n") {
				return // cannot be written back with one kind of quote
			}
			q := "'"
			if strings.Contains(value, "'") {
				q = `"`
			}
			parts = append(parts, "-D"+name+"="+q+value+q)
		}
		back, err := ParseExtraOpts(strings.Join(parts, " "))
		if err != nil {
			t.Fatalf("round trip of %q: %v", s, err)
		}
		if !reflect.DeepEqual(back, m) {
			t.Errorf("round trip of %q: got %q, want %q", s, back, m)
		}
	})
}
