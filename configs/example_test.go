package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kedgehq/kedge/kafka"
)

// exampleFile is the documented example configuration.
const exampleFile = "kedge.yaml"

// docEntry is one key (or commented-out Kafka property) of the example file
// with the comment block just above it.
type docEntry struct {
	name, value, doc string
	line             int
}

var (
	sectionLine  = regexp.MustCompile(`^([a-z]+):\s*$`)
	keyLine      = regexp.MustCompile(`^  ([a-z][a-z0-9.]*):(?:\s+(.*))?$`)
	commentLine  = regexp.MustCompile(`^\s*#\s?(.*)$`)
	propertyLine = regexp.MustCompile(`^([a-z][a-z0-9.-]*): (.*)$`)
)

// parseExample reads the example file's text: its keys, in order, and its
// commented-out Kafka properties. Anything it does not understand is an error,
// so the file keeps to the simple layout this check relies on.
func parseExample(text string, isProperty func(string) bool) (keys, props []docEntry, err error) {
	section := ""
	var block []string
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		switch {
		case strings.TrimSpace(line) == "":
			block = nil
		case sectionLine.MatchString(line):
			section = sectionLine.FindStringSubmatch(line)[1]
			block = nil
		case strings.HasPrefix(line, "#"):
			// A comment outside any section's body.
			block = nil
		case keyLine.MatchString(line):
			if section == "" {
				return nil, nil, fmt.Errorf("line %d: key outside a section", n)
			}
			m := keyLine.FindStringSubmatch(line)
			keys = append(keys, docEntry{section + "." + m[1], m[2], strings.Join(block, " "), n})
			block = nil
		case commentLine.MatchString(line) && strings.HasPrefix(line, "  "):
			c := commentLine.FindStringSubmatch(line)[1]
			if m := propertyLine.FindStringSubmatch(c); m != nil && section == "kafka" && isProperty(m[1]) {
				props = append(props, docEntry{m[1], m[2], strings.Join(block, " "), n})
				block = nil
				continue
			}
			block = append(block, c)
		default:
			return nil, nil, fmt.Errorf("line %d: unexpected layout: %q", n, line)
		}
	}
	return keys, props, nil
}

// yamlScalar undoes the quoting of a plain YAML scalar as written in the example.
func yamlScalar(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'")
	}
	return s
}

// renderDefault is how a key's default must appear in the example.
func renderDefault(k Key) string {
	if k.Kind == List {
		return "[" + strings.Join(k.Default.([]string), ", ") + "]"
	}
	return fmt.Sprint(k.Default)
}

func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func isProperty(name string) bool { return slices.Contains(kafka.PropertyNames(), name) }

// exampleProblems lists every way the example's text has drifted from the
// schema and the Kafka property list: each key once, in schema order, set to
// its default, under its doc; each supported Kafka property once, commented
// out, under its doc.
func exampleProblems(text string) []string {
	keys, props, err := parseExample(text, isProperty)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	byName := schemaByName()
	var order, want []string
	for _, e := range keys {
		order = append(order, e.name)
		k, ok := byName[e.name]
		if !ok || k.Kind == Section {
			report("line %d: %s is not a schema key", e.line, e.name)
			continue
		}
		if got, def := yamlScalar(e.value), renderDefault(k); got != def {
			report("line %d: %s is %q, want its default %q", e.line, e.name, got, def)
		}
		if !strings.Contains(normalize(e.doc), normalize(k.Doc)) {
			report("line %d: the comment above %s does not hold its doc %q; it says %q", e.line, e.name, k.Doc, e.doc)
		}
	}
	for _, k := range Keys {
		if k.Kind != Section {
			want = append(want, k.Name)
		}
	}
	if !slices.Equal(order, want) {
		report("keys documented:\n%v\nwant every schema key once, in schema order:\n%v", order, want)
	}
	seen := map[string]int{}
	for _, e := range props {
		seen[e.name]++
		if !strings.Contains(normalize(e.doc), normalize(kafka.PropertyDoc(e.name))) {
			report("line %d: the comment above Kafka property %s does not hold its doc %q; it says %q", e.line, e.name, kafka.PropertyDoc(e.name), e.doc)
		}
	}
	for _, name := range kafka.PropertyNames() {
		if seen[name] != 1 {
			report("Kafka property %s is documented %d times, want once (commented out)", name, seen[name])
		}
	}
	return problems
}

func TestExampleDocumentsEverything(t *testing.T) {
	for _, p := range exampleProblems(readExample(t)) {
		t.Errorf("%s: %s", exampleFile, p)
	}
}

// TestExampleDocumentsEveryKafkaProperty checks the commented-out Kafka
// properties: each supported one once, under its doc, with a value that
// loads and that the kafka package accepts once uncommented.
func TestExampleDocumentsEveryKafkaProperty(t *testing.T) {
	text := readExample(t)
	_, props, err := parseExample(text, isProperty)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range props {
		t.Run("uncomment "+e.name, func(t *testing.T) {
			lines := strings.Split(text, "\n")
			lines[e.line-1] = strings.Replace(lines[e.line-1], "# ", "", 1)
			c, err := Load(Options{File: writeFile(t, strings.Join(lines, "\n")), Environ: noEnv})
			if err != nil {
				t.Fatalf("with %s uncommented: %v", e.name, err)
			}
			got, ok := c.Kafka.Properties[e.name]
			if !ok || got != yamlScalar(e.value) || len(c.Kafka.Properties) != 1 {
				t.Fatalf("with %s uncommented, Properties = %q", e.name, c.Kafka.Properties)
			}
			props := map[string]string{e.name: got}
			if strings.HasPrefix(e.name, "sasl.") {
				props["security.protocol"] = "SASL_PLAINTEXT"
				if e.name != "sasl.jaas.config" {
					props["sasl.username"], props["sasl.password"] = "u", "p"
					if got != "" { // an empty documented default stays "u"/"p"
						props[e.name] = got
					}
				}
			}
			if _, err := kafka.ParseProperties(props); err != nil {
				t.Errorf("the documented value is rejected: %v", err)
			}
		})
	}
	if len(props) != len(kafka.PropertyNames()) {
		t.Errorf("%d Kafka properties documented, want %d", len(props), len(kafka.PropertyNames()))
	}
	if !regexp.MustCompile(`(?s)bootstrap\.servers.{0,80}empty.{0,80}EMBEDDED`).MatchString(text) {
		t.Errorf("%s does not say that an empty bootstrap.servers starts the embedded broker", exampleFile)
	}
}

// TestExampleLoadsToDefaults: the example changes nothing.
func TestExampleLoadsToDefaults(t *testing.T) {
	got, err := Load(Options{File: exampleFile, Environ: noEnv})
	if err != nil {
		t.Fatalf("Load(%s): %v", exampleFile, err)
	}
	want, err := Load(Options{Environ: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) differs from the defaults:\n got %+v\nwant %+v", exampleFile, got, want)
	}
}

// TestExampleMentions checks the loading rules the example's header promises.
func TestExampleMentions(t *testing.T) {
	text := readExample(t)
	for _, s := range []string{"KEDGE_CACHE_EXPIRE_TIME", "KEDGE_KAFKA_LINGER_MS", ExtraOptsEnv, "--set", "kedge config check", "docs/configuration.md"} {
		if !strings.Contains(text, s) {
			t.Errorf("%s does not mention %s", exampleFile, s)
		}
	}
}

// TestParseExampleCatchesDrift makes sure the example checks above can fail.
func TestParseExampleCatchesDrift(t *testing.T) {
	text := readExample(t)
	mutations := map[string]func(string) string{
		"changed default": func(s string) string {
			return strings.Replace(s, "\n  expire.time: 180s\n", "\n  expire.time: 181s\n", 1)
		},
		"missing key": func(s string) string { return strings.Replace(s, "  max.subscriptions: 1000\n", "", 1) },
		"changed doc": func(s string) string {
			return strings.Replace(s, "# Messages kept per subject", "# Messages held per subject", 1)
		},
		"missing property":     func(s string) string { return strings.Replace(s, "  # linger.ms: 10\n", "", 1) },
		"uncommented property": func(s string) string { return strings.Replace(s, "  # linger.ms: 10\n", "  linger.ms: 10\n", 1) },
		"changed property doc": func(s string) string {
			return strings.Replace(s, "# How long a producer waits", "# How long a producer lingers", 1)
		},
		"keys out of order": func(s string) string {
			return strings.Replace(s, "  level: info\n\n  # Log line format: text (key=value) or json.\n  format: text\n",
				"  # Log line format: text (key=value) or json.\n  format: text\n\n  level: info\n", 1)
		},
		"unknown key": func(s string) string { return strings.Replace(s, "  size: 1000\n", "  size: 1000\n  colour: red\n", 1) },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			m := mutate(text)
			if m == text {
				t.Fatal("mutation did not apply; update this test")
			}
			if len(exampleProblems(m)) == 0 {
				t.Errorf("the %s went unnoticed", name)
			}
		})
	}
}

// TestConfigurationDoc keeps docs/configuration.md in step with the schema
// and the Kafka property table.
func TestConfigurationDoc(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Table rows by their first cell, in the chapter whose heading starts with title.
	tableRows := func(title string) map[string]string {
		rows := map[string]string{}
		for _, chapter := range strings.Split(string(b), "\n## ") {
			if !strings.HasPrefix(chapter, title) {
				continue
			}
			for _, line := range strings.Split(chapter, "\n") {
				if m := regexp.MustCompile("^\\| `([a-z][a-z0-9.-]*)` \\|").FindStringSubmatch(line); m != nil {
					if _, dup := rows[m[1]]; dup {
						t.Errorf("docs/configuration.md, %s: two table rows for %s", title, m[1])
					}
					rows[m[1]] = line
				}
			}
		}
		if len(rows) == 0 {
			t.Errorf("docs/configuration.md has no chapter %q with a table", title)
		}
		return rows
	}
	rows := tableRows("kedge keys")
	if len(rows) != len(Names()) {
		t.Errorf("docs/configuration.md documents %d kedge keys, the schema has %d", len(rows), len(Names()))
	}
	for _, k := range Keys {
		if k.Kind == Section {
			continue
		}
		row, ok := rows[k.Name]
		if !ok {
			t.Errorf("docs/configuration.md has no table row for key %s", k.Name)
			continue
		}
		def := renderDefault(k)
		if def == "" {
			def = `""`
		}
		if !strings.Contains(row, "`"+def+"`") {
			t.Errorf("docs/configuration.md row for %s does not give its default `%s`: %s", k.Name, def, row)
		}
	}
	props := tableRows("Kafka properties")
	for _, name := range kafka.PropertyNames() {
		if _, ok := props[name]; !ok {
			t.Errorf("docs/configuration.md has no table row for Kafka property %s", name)
		}
	}
}
