//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package guard

import (
	"os"
	"syscall"
)

// lockFolder takes an exclusive advisory lock (flock) on folder dir, which
// every FileStore on a file in it takes around a save, so that two of them
// never interleave compare and replace. The lock goes with the returned
// function (or with the process).
func lockFolder(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
