package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kedgehq/kedge/configs"
	"github.com/kedgehq/kedge/kafka"
)

// configFlags registers --config, --set and one flag per configuration key.
type configFlags struct {
	file string
	sets []string
	fs   *pflag.FlagSet
}

func newConfigFlags(fs *pflag.FlagSet) *configFlags {
	cf := &configFlags{fs: fs}
	fs.StringVar(&cf.file, "config", "", "YAML configuration file")
	fs.StringArrayVar(&cf.sets, "set", nil, "override a key, e.g. --set kafka.linger.ms=5 (repeatable)")
	for _, k := range configs.Keys {
		if k.Kind != configs.Section {
			fs.String(k.Name, "", k.Doc)
		}
	}
	return cf
}

// options collects the flags into configs.Options: --<key> flags, then --set.
func (cf *configFlags) options() configs.Options {
	var sets []string
	cf.fs.Visit(func(f *pflag.Flag) {
		if f.Name != "config" && f.Name != "set" {
			sets = append(sets, f.Name+"="+f.Value.String())
		}
	})
	return configs.Options{File: cf.file, Sets: append(sets, cf.sets...)}
}

// loadConfig loads and fully checks the configuration, Kafka properties included.
func loadConfig(o configs.Options) (*configs.Config, kafka.Options, error) {
	cfg, err := configs.Load(o)
	if err != nil {
		return nil, kafka.Options{}, err
	}
	kopts, err := kafka.ParseProperties(cfg.Kafka.Properties)
	if err != nil {
		return nil, kafka.Options{}, err
	}
	return cfg, kopts, nil
}

func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		_, _ = fmt.Fprintln(stderr, "usage: kedge config check FILE")
		return 2
	}
	_, _, err := loadConfig(configs.Options{File: args[1]})
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "%s: invalid configuration:\n", args[1])
		for _, line := range strings.Split(joinErrors(err), "\n") {
			_, _ = fmt.Fprintf(stderr, "  %s\n", line)
		}
		return 1
	}
	_, _ = fmt.Fprintf(stdout, "%s: ok\n", args[1])
	return 0
}

// joinErrors flattens errors.Join trees into one line each.
func joinErrors(err error) string {
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		var lines []string
		for _, e := range multi.Unwrap() {
			lines = append(lines, joinErrors(e))
		}
		return strings.Join(lines, "\n")
	}
	return err.Error()
}
