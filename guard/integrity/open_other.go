//go:build !unix

package integrity

import "os"

// openFlags opens read-only; non-Unix systems have no FIFOs to block on.
const openFlags = os.O_RDONLY
