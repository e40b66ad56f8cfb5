package configs

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// convert checks v against key's kind, range and allowed values.
func convert(key Key, v any) (any, error) {
	switch key.Kind {
	case String:
		s, err := scalarString(v)
		if err == nil && key.Allowed != nil && !slices.Contains(key.Allowed, s) {
			err = fmt.Errorf("%q is not one of %s", s, strings.Join(key.Allowed, ", "))
		}
		return s, err
	case Int:
		n, err := toInt(v)
		if err != nil {
			return nil, err
		}
		return int(n), checkMin(key, n, strconv.FormatInt(n, 10))
	case Bool:
		return toBool(v)
	case Duration:
		d, err := toDuration(v)
		if err != nil {
			return nil, err
		}
		return d, checkMin(key, int64(d), d.String())
	case Bytes:
		n, err := ParseBytes(v)
		if err != nil {
			return nil, err
		}
		return n, checkMin(key, n, strconv.FormatInt(n, 10))
	case List:
		return toList(v)
	}
	return nil, fmt.Errorf("key kind %v cannot be set directly", key.Kind)
}

func checkMin(key Key, n int64, shown string) error {
	if n < key.Min {
		if key.Kind == Duration {
			return fmt.Errorf("%s is below the minimum %v", shown, time.Duration(key.Min))
		}
		return fmt.Errorf("%s is below the minimum %d", shown, key.Min)
	}
	return nil
}

func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, float64, bool:
		return fmt.Sprint(x), nil
	case time.Time: // YAML reads 2024-01-02 as a date
		if x.Hour() == 0 && x.Minute() == 0 && x.Second() == 0 && x.Nanosecond() == 0 {
			return x.Format(time.DateOnly), nil
		}
		return x.Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("want a string, got %T", v)
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), nil
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("want an integer, got %v", v)
}

func toBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("want true or false, got %v", v)
}

func toDuration(v any) (time.Duration, error) {
	s, ok := v.(string)
	if ok {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			return d, nil
		}
	}
	return 0, fmt.Errorf("want a duration with a unit, like 180s or 5m, got %v", v)
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseBytes reads a size: an integer number of bytes, or a number with one of
// the units B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func ParseBytes(v any) (int64, error) {
	if n, err := toInt(v); err == nil {
		return n, nil
	}
	s, ok := v.(string)
	if ok {
		s = strings.TrimSpace(s)
		for _, u := range byteUnits {
			num, found := strings.CutSuffix(s, u.suffix)
			if !found {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err == nil && n >= 0 && n <= math.MaxInt64/u.mult {
				return n * u.mult, nil
			}
			break
		}
	}
	return 0, fmt.Errorf("want a size like 65536, 64KiB or 256MiB, got %v", v)
}

func toList(v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, err := scalarString(e)
			if err != nil {
				return nil, fmt.Errorf("list element: %w", err)
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		var out []string
		for _, p := range strings.Split(x, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list, got %v", v)
}

// propertyString renders a Kafka property value (a scalar, or a list joined
// with commas as Kafka does for bootstrap.servers).
func propertyString(v any) (string, error) {
	if l, ok := v.([]any); ok {
		parts, err := toList(l)
		return strings.Join(parts, ","), err
	}
	if m, ok := v.(map[string]any); ok {
		return "", fmt.Errorf("want a value, got a map %v", m)
	}
	return scalarString(v)
}
