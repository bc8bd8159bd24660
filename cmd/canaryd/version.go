package main

import (
	"runtime/debug"
	"strings"
)

// version is set at build time by `make build` and `make release`
// (-ldflags "-X main.version=…", from `git describe --tags`); empty in a
// plain `go build`.
var version string

// buildVersion is the version canaryd reports: the one set at build time,
// else the module version `go install …@vX.Y.Z` records, else "dev" with the
// commit when the build recorded it.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + strings.ToLower(rev[:min(12, len(rev))]) + modified
}
