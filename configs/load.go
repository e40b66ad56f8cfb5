package configs

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable kedge reads.
const EnvPrefix = "KEDGE_"

// ExtraOptsEnv holds "-Dname=value" pairs that override Kafka-section keys,
// for container deployments: KEDGE_KAFKA_EXTRA_OPTS="-Dbootstrap.servers=k:9092 -Dlinger.ms=5".
const ExtraOptsEnv = "KEDGE_KAFKA_EXTRA_OPTS"

// Options says where to load configuration from.
type Options struct {
	// File is a YAML file; empty means defaults only.
	File string
	// Environ is the environment as "NAME=value"; nil means os.Environ().
	Environ []string
	// Sets are "key=value" overrides from the command line, applied last.
	Sets []string
}

// layer is one source of values; origin names it in error messages.
type layer struct {
	values map[string]any
	origin map[string]string
}

// Load reads the configuration in the documented order and checks every key.
// All problems found are reported together, each naming its key.
func Load(o Options) (*Config, error) {
	k := koanf.New("/")
	origin := map[string]string{}
	if err := k.Load(confmap.Provider(defaults(), "/"), nil); err != nil {
		return nil, err
	}
	if o.File != "" {
		if err := loadFile(k, o.File, origin); err != nil {
			return nil, err
		}
	}
	environ := o.Environ
	if environ == nil {
		environ = os.Environ()
	}
	env, err := fromEnv(environ)
	if err != nil {
		return nil, err
	}
	sets, err := fromSets(o.Sets)
	if err != nil {
		return nil, err
	}
	for _, l := range []layer{env, sets} {
		if err := k.Load(confmap.Provider(l.values, "/"), nil); err != nil {
			return nil, err
		}
		for name, from := range l.origin {
			origin[name] = from
		}
	}
	return build(k.All(), origin)
}

// loadFile merges a YAML file. Its keys are brought to one spelling first
// ("cache: {expire: {time: …}}" and "cache: {expire.time: …}" alike), so
// that a later layer overrides a key however the file nested it.
func loadFile(k *koanf.Koanf, path string, origin map[string]string) error {
	f := koanf.New("/")
	if err := f.Load(file.Provider(path), yaml.Parser()); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	flat := map[string]any{}
	var errs []error
	for key, v := range f.All() {
		name := canonical(key)
		if v == nil {
			continue // an empty value or a section with every key commented out
		}
		if _, dup := flat[keyPath(name)]; dup {
			errs = append(errs, fmt.Errorf("config file %s: key %s is given twice (dotted and nested)", path, name))
		}
		flat[keyPath(name)] = v
		origin[name] = "in " + path
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return k.Load(confmap.Provider(flat, "/"), nil)
}

// canonical turns a koanf path ("kafka/topics.regex" or "kafka/topics/regex")
// into the documented key name "kafka.topics.regex".
func canonical(path string) string { return strings.ReplaceAll(path, "/", ".") }

// keyPath turns a key name into the koanf path: the section, then the rest.
func keyPath(name string) string {
	section, rest, ok := strings.Cut(name, ".")
	if !ok {
		return name
	}
	return section + "/" + rest
}

func defaults() map[string]any {
	m := make(map[string]any, len(Keys))
	for _, key := range Keys {
		if key.Kind != Section {
			m[keyPath(key.Name)] = key.Default
		}
	}
	return m
}

// fromEnv maps KEDGE_SECTION_SOME_NAME to "section.some.name", and expands
// KEDGE_KAFKA_EXTRA_OPTS. Variables whose first word is no section of the
// schema (KEDGE_URL, KEDGE_HOME) are not configuration and are left alone;
// within a section, an unknown name is an error like any unknown key.
func fromEnv(environ []string) (layer, error) {
	l := layer{values: map[string]any{}, origin: map[string]string{}}
	var extra string
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if name == ExtraOptsEnv {
			extra = value
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		key = strings.ReplaceAll(key, "_", ".")
		if section, _, _ := strings.Cut(key, "."); !sections()[section] {
			continue // not configuration (KEDGE_URL is kedge sub's, say)
		}
		l.values[keyPath(key)] = value
		l.origin[key] = "from environment variable " + name
	}
	pairs, err := ParseExtraOpts(extra)
	if err != nil {
		return l, err
	}
	for name, value := range pairs {
		l.values["kafka/"+name] = value
		l.origin["kafka."+name] = "from " + ExtraOptsEnv
	}
	return l, nil
}

// ParseExtraOpts parses "-Dname=value" pairs separated by white space; a
// value may be quoted with ' or " to hold spaces.
func ParseExtraOpts(s string) (map[string]string, error) {
	out := map[string]string{}
	toks, err := splitQuoted(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ExtraOptsEnv, err)
	}
	for _, tok := range toks {
		rest, ok := strings.CutPrefix(tok, "-D")
		name, value, hasEq := strings.Cut(rest, "=")
		if !ok || !hasEq || name == "" {
			return nil, fmt.Errorf("%s: %q is not of the form -Dname=value", ExtraOptsEnv, tok)
		}
		out[name] = value
	}
	return out, nil
}

// splitQuoted splits on white space, keeping quoted runs (quotes removed).
func splitQuoted(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote rune
	inTok := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '\'' || r == '"'):
			quote, inTok = r, true
		case quote == 0 && (r == ' ' || r == '\t' || r == '\n'):
			if inTok {
				out = append(out, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			cur.WriteRune(r)
			inTok = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, cur.String())
	}
	if inTok {
		out = append(out, cur.String())
	}
	return out, nil
}

func fromSets(sets []string) (layer, error) {
	l := layer{values: map[string]any{}, origin: map[string]string{}}
	for _, s := range sets {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return l, fmt.Errorf("--set %q: want key=value", s)
		}
		l.values[keyPath(name)] = value
		l.origin[name] = "from the command line"
	}
	return l, nil
}

// build checks every loaded key against the schema and fills a Config.
func build(all map[string]any, origin map[string]string) (*Config, error) {
	c := &Config{}
	c.Kafka.Properties = map[string]string{}
	byName := schemaByName()
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	var errs []error
	for _, p := range names {
		name := canonical(p)
		if all[p] == nil {
			continue // null: the key keeps its default
		}
		where := origin[name]
		key, ok := byName[name]
		if !ok {
			if prop, isKafka := strings.CutPrefix(name, "kafka."); isKafka {
				s, err := propertyString(all[p])
				if err != nil {
					errs = append(errs, keyError(name, where, err))
				}
				c.Kafka.Properties[prop] = s
				continue
			}
			errs = append(errs, unknownKey(name, where))
			continue
		}
		v, err := convert(key, all[p])
		if err != nil {
			errs = append(errs, keyError(name, where, err))
			continue
		}
		key.set(c, v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func schemaByName() map[string]Key {
	m := make(map[string]Key, len(Keys))
	for _, k := range Keys {
		m[k.Name] = k
	}
	return m
}

func keyError(name, where string, err error) error {
	if where != "" {
		return fmt.Errorf("key %s (%s): %w", name, where, err)
	}
	return fmt.Errorf("key %s: %w", name, err)
}

// ErrUnknownKey is wrapped by the error for a key the schema does not have.
var ErrUnknownKey = errors.New("unknown key")

func unknownKey(name, where string) error {
	msg := fmt.Sprintf("%v %q", ErrUnknownKey, name)
	if where != "" {
		msg += " (" + where + ")"
	}
	if s := suggest(name); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return wrapped{msg, ErrUnknownKey}
}

// wrapped is an error with its own text that still matches a sentinel.
type wrapped struct {
	msg string
	err error
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }

// suggest returns the schema key closest to name, if it is close enough.
func suggest(name string) string {
	best, bestD := "", 4
	for _, k := range Keys {
		if k.Kind == Section {
			continue
		}
		if d := distance(name, k.Name); d < bestD {
			best, bestD = k.Name, d
		}
	}
	return best
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sections returns the first words of the schema's key names.
func sections() map[string]bool {
	m := make(map[string]bool)
	for _, k := range Keys {
		section, _, _ := strings.Cut(k.Name, ".")
		m[section] = true
	}
	return m
}

// Names lists every key name of the schema, sorted.
func Names() []string {
	var out []string
	for _, k := range Keys {
		if k.Kind != Section {
			out = append(out, k.Name)
		}
	}
	slices.Sort(out)
	return out
}
