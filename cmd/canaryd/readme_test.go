package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeSection returns the body of the README's "## title" section.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(raw), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	body, _, _ = strings.Cut(body, "\n## ")
	return body
}

// tableRows returns the cells of the markdown table rows of text (header
// and separator excluded).
func tableRows(text string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		// Cells split at "|" but not at an escaped "\|".
		var cells []string
		cell := ""
		for i := 1; i < len(line); i++ {
			switch {
			case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
				cell += "|"
				i++
			case line[i] == '|':
				cells = append(cells, strings.TrimSpace(cell))
				cell = ""
			default:
				cell += string(line[i])
			}
		}
		rows = append(rows, cells)
	}
	if len(rows) > 0 {
		rows = rows[1:] // the header
	}
	return rows
}

var readmeVarName = regexp.MustCompile("`(CANARY_[A-Z0-9_]+)`")

// The README's configuration table and canaryd's list of variables (the
// config struct, which --help and the unknown-variable check read) agree:
// the same variables, in the same groups and order, with the same defaults.
func TestREADMEConfigurationTable(t *testing.T) {
	type row struct{ name, group, def string }
	var readme []row
	group := ""
	for _, cells := range tableRows(readmeSection(t, "Configuration")) {
		if len(cells) != 3 {
			t.Fatalf("configuration table row %q does not have 3 cells", cells)
		}
		if g, ok := strings.CutPrefix(cells[0], "**"); ok && cells[1] == "" {
			group = strings.TrimSuffix(g, "**")
			continue
		}
		names := readmeVarName.FindAllStringSubmatch(cells[0], -1)
		if len(names) == 0 {
			t.Errorf("configuration table row %q names no variable", cells[0])
		}
		defs := strings.Split(cells[1], " / ")
		for i, n := range names {
			def := defs[min(i, len(defs)-1)]
			readme = append(readme, row{n[1], group, def})
		}
	}
	var want []row
	for _, v := range knownVariables() {
		want = append(want, row{v.Name, v.Group, v.Default})
	}
	for i := range max(len(readme), len(want)) {
		if i >= len(readme) || i >= len(want) || readme[i].name != want[i].name || readme[i].group != want[i].group {
			var got, exp row
			if i < len(readme) {
				got = readme[i]
			}
			if i < len(want) {
				exp = want[i]
			}
			t.Fatalf("README configuration table, entry %d: %s in group %q; canaryd's config struct has %s in group %q there (same variables, groups and order in both)",
				i+1, got.name, got.group, exp.name, exp.group)
		}
		r, v := readme[i], knownVariables()[i]
		switch {
		case v.Default != "" && r.def != "`"+v.Default+"`":
			t.Errorf("README: %s defaults to %s; canaryd's default is %q", r.name, r.def, v.Default)
		case v.Default == "" && strings.HasPrefix(r.def, "`"):
			t.Errorf("README: %s defaults to %s; canaryd has no default for it (describe it in words)", r.name, r.def)
		case v.Required && r.def != "required":
			t.Errorf("README: %s is required; the table says %s", r.name, r.def)
		}
	}
}

// The README's exit-status table is the one canaryd --help prints.
func TestREADMEExitStatuses(t *testing.T) {
	body := readmeSection(t, "Running it")
	_, table, ok := strings.Cut(body, "| status | meaning |")
	if !ok {
		t.Fatal(`README "Running it" has no exit-status table`)
	}
	rows := tableRows("| status | meaning |" + table)
	var got, want []string
	for _, r := range rows {
		if len(r) == 2 && strings.HasPrefix(r[0], "`") {
			got = append(got, r[0]+" "+r[1])
		}
	}
	for _, s := range exitStatuses {
		want = append(want, fmt.Sprintf("`%d` %s", s.code, s.meaning))
	}
	if !slices.Equal(got, want) {
		t.Errorf("README exit statuses:\n%s\nwant (main.go's exitStatuses):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
