package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
)

// printHelp prints canaryd --help: the commands, the variables by group
// (from config's tags) and the exit statuses.
func printHelp(w io.Writer) {
	fmt.Fprintf(w, "canaryd %s: a front-door reverse proxy for canary releases.\n\nUsage:\n", buildVersion())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cmd := range commands() {
		name := cmd.name
		if name == "serve" {
			name = "[serve]"
		}
		fmt.Fprintf(tw, "  canaryd %s\t%s\n", name, cmd.summary)
	}
	fmt.Fprintf(tw, "  canaryd help [COMMAND]\tthis help, or a command's flags and details (also: canaryd COMMAND -h)\n")
	tw.Flush()
	fmt.Fprint(w, `
Signals (serve): SIGTERM and SIGINT stop accepting, finish in-flight requests
(up to CANARY_SHUTDOWN_TIMEOUT), save the state and exit 0; SIGHUP reloads what
can change without a restart (the TLS certificate, the admin token files) and
never stops canaryd.

Environment: read once at start. A malformed or unknown CANARY_* variable stops
canaryd with exit status 2 and one line naming it.
`)
	printVariables(w, knownVariables(), true)
	fmt.Fprintln(w, "\nExit status:")
	for _, s := range exitStatuses {
		fmt.Fprintf(w, "  %d  %s\n", s.code, s.meaning)
	}
	fmt.Fprintln(w, "\nMore: README.md (https://github.com/canaryd/canaryd).")
}

// printVariables prints vars as rows (name, default, help) aligned across
// the whole list, under their group names when grouped.
func printVariables(w io.Writer, vars []variable, grouped bool) {
	defaults := make([]string, len(vars))
	nameWidth, defWidth := 0, 0
	for i, v := range vars {
		defaults[i] = v.Default
		switch {
		case v.Required:
			defaults[i] = "required"
		case v.Default == "":
			defaults[i] = "-"
		}
		nameWidth = max(nameWidth, len(v.Name))
		defWidth = max(defWidth, len(defaults[i]))
	}
	group := ""
	for i, v := range vars {
		if grouped && v.Group != group {
			group = v.Group
			fmt.Fprintf(w, "\n  %s\n", group)
		}
		fmt.Fprintf(w, "    %-*s  %-*s  %s\n", nameWidth, v.Name, defWidth, defaults[i], v.Help)
	}
}

// printCommandHelp prints one command's help: its synopsis, what it does,
// its flags (from fs) and the variables it reads.
func printCommandHelp(w io.Writer, name string, fs *flag.FlagSet, vars []variable, about ...string) {
	for _, cmd := range commands() {
		if cmd.name == name {
			fmt.Fprintf(w, "Usage: %s\n\n%s.\n", strings.TrimSpace("canaryd "+name+" "+cmd.synopsis), upperFirst(cmd.summary))
		}
	}
	for _, a := range about {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(a))
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags (-name or --name):")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if len(vars) > 0 {
		fmt.Fprint(w, "\nEnvironment:\n")
		printVariables(w, vars, false)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// describedVariables lists the variables the struct type t reads, with the
// help and defaults config declares for them (t may declare only names).
func describedVariables(t reflect.Type) []variable {
	known := knownVariables()
	var out []variable
	for _, v := range variablesOf(reflect.New(t).Elem()) {
		for _, k := range known {
			if k.Name == v.Name {
				v = k
			}
		}
		out = append(out, v)
	}
	return out
}
