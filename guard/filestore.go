package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// FileStore is the Store of a single canaryd: the record in one file
// (CANARY_STATE_FILE), replaced atomically on every save (a temporary file in
// the same folder, written and synced, renamed over the file, the folder
// synced), so a crash at any moment leaves either the old or the new record.
//
// The revision is written into the file. A save holds an exclusive lock on
// the folder (flock, where the system has it) while it compares the stored
// revision with the one the change was computed from and replaces the file,
// so two FileStores on one path, in one process or two, honour the Store
// contract as an etcd store does; Watch notices the file being replaced by
// polling its identity. canaryd itself runs one guard per file.
type FileStore struct {
	path string
	now  func() time.Time
	poll time.Duration

	// mu protects watchers.
	mu       sync.Mutex
	watchers map[chan struct{}]struct{}
}

// filePoll is how often Watch looks at the file.
const filePoll = 250 * time.Millisecond

// NewFileStore returns the store for path after proving that the file can
// be replaced atomically there (the path is not a folder, its folder
// accepts a new file); otherwise an error wrapping ErrStateFile that names
// the path. It removes temporary files a crash between create and rename
// left behind. now stamps quarantined files; nil means time.Now.
func NewFileStore(path string, now func() time.Time) (*FileStore, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: the path is empty", ErrStateFile)
	}
	if err := checkWritable(path); err != nil {
		return nil, err
	}
	removeStaleTemps(path)
	if now == nil {
		now = time.Now
	}
	return &FileStore{path: path, now: now, poll: filePoll, watchers: map[chan struct{}]struct{}{}}, nil
}

// Kind is "file".
func (s *FileStore) Kind() string { return "file" }

// Path is the file the record is kept in.
func (s *FileStore) Path() string { return s.path }

// Load reads the record.
func (s *FileStore) Load(context.Context) (Record, Revision, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, 0, ErrNoRecord
	}
	if err != nil {
		return Record{}, 0, err // an *fs.PathError: it names the file
	}
	rec, rev, err := DecodeRecord(data)
	if err != nil {
		return Record{}, 0, fmt.Errorf("%s: %w", s.path, err)
	}
	return rec, rev, nil
}

// Save replaces the file with rec if it still holds revision prev.
func (s *FileStore) Save(_ context.Context, rec Record, prev Revision) (Revision, error) {
	dir := filepath.Dir(s.path)
	unlock, err := lockFolder(dir)
	if err != nil {
		return 0, fmt.Errorf("lock folder %s: %w", dir, err)
	}
	defer unlock()
	cur, err := s.storedRevision()
	if err != nil {
		return 0, err
	}
	if cur != prev {
		return 0, fmt.Errorf("%w: %s holds revision %d, the change was computed from %d", ErrRevisionConflict, s.path, cur, prev)
	}
	data, err := EncodeRecord(rec, prev+1)
	if err != nil {
		return 0, err
	}
	if err := writeFileAtomic(s.path, data); err != nil {
		return 0, err
	}
	s.notify()
	return prev + 1, nil
}

// storedRevision reads only the revision of the stored record (0 for no
// file): the compare of a compare-and-swap needs no more, and a save stays
// cheap however long the history. EncodeRecord writes "version" and
// "revision" first, so they are read as the first tokens; a file written
// otherwise (by hand) is decoded whole.
func (s *FileStore) storedRevision() (Revision, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var head [256]byte
	n, err := io.ReadFull(f, head[:])
	f.Close()
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return 0, err
	}
	version, rev, ok := recordHead(head[:n])
	if !ok {
		data, err := os.ReadFile(s.path)
		if err != nil {
			return 0, err
		}
		var head struct {
			Version  int      `json:"version"`
			Revision Revision `json:"revision"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			return 0, fmt.Errorf("%s: %w: not valid JSON: %w", s.path, ErrCorruptRecord, err)
		}
		version, rev = head.Version, head.Revision
	}
	switch version {
	case 1:
		return 1, nil // before revisions (DecodeRecord reads it as 1)
	case recordVersion:
		return rev, nil
	}
	return 0, fmt.Errorf("%s: %w: unknown version %d", s.path, ErrCorruptRecord, version)
}

// recordHead reads {"version": V, "revision": R, … from the start of data;
// ok is false unless the object begins with those keys (a version 1 file
// has no revision: ok with version 1).
func recordHead(data []byte) (version int, rev Revision, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	next := func(want string) (int64, bool) {
		if tok, err := dec.Token(); err != nil || tok != want {
			return 0, false
		}
		var n int64
		if err := dec.Decode(&n); err != nil {
			return 0, false
		}
		return n, true
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, false
	}
	v, ok := next("version")
	if !ok {
		return 0, 0, false
	}
	if v == 1 {
		return 1, 0, true
	}
	r, ok := next("revision")
	return int(v), Revision(r), ok
}

// Quarantine renames the file aside as <path>.corrupt-<unix seconds>.
func (s *FileStore) Quarantine(context.Context) (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%d", s.path, s.now().Unix())
	if err := os.Rename(s.path, aside); err != nil {
		return "", fmt.Errorf("keep %s aside: %w", s.path, err)
	}
	s.notify()
	return aside, nil
}

// Watch signals after this store's saves at once, and after another
// writer's within filePoll, by comparing the file's identity (a save
// renames a new file into place).
func (s *FileStore) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.watchers, ch)
			s.mu.Unlock()
			close(ch)
		}()
		t := time.NewTicker(s.poll)
		defer t.Stop()
		last, _ := os.Stat(s.path)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			fi, err := os.Stat(s.path)
			if err != nil {
				fi = nil
			}
			if changed(last, fi) {
				signal(ch)
			}
			last = fi
		}
	}()
	return ch
}

// changed reports whether the file described by b is not the one described
// by a (either may be nil: no file).
func changed(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	return !os.SameFile(a, b) || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime())
}

// notify signals every watcher of this store.
func (s *FileStore) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.watchers {
		signal(ch)
	}
}

// signal sends on a buffered channel without blocking (coalescing).
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// checkWritable proves that the state file can be replaced atomically: the
// path is not a folder and its folder accepts a new file.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: %s is a folder", ErrStateFile, path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".probe-*")
	if err != nil {
		return fmt.Errorf("%w: cannot write next to %s: %w", ErrStateFile, path, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%w: cannot remove a file next to %s: %w", ErrStateFile, path, err)
	}
	return nil
}

// removeStaleTemps deletes temporary files a crash between create and rename
// left next to the state file.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(filepath.Base(path))+".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// globEscape quotes the pattern characters of a file name.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// writeFileAtomic replaces path with data so that a crash at any moment
// leaves either the old or the new file: a temporary file in the same folder
// is written and synced, renamed over path, and the folder synced.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename over %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}
