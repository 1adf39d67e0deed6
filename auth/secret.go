package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SecretFile is the name of the nonce secret inside the data directory.
const SecretFile = "auth.secret"

// secretLen is the length of a generated secret in bytes.
const secretLen = 32

// LoadOrCreateSecret reads the nonce-signing secret from path (hex text),
// creating it with 32 random bytes and mode 0600 when the file does not
// exist. Nodes that share the file accept each other's nonces.
func LoadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(s) < 16 {
			return nil, fmt.Errorf("auth: secret %s: want at least 16 bytes as hex", path)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	s := make([]byte, secretLen)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	// Written to a temporary file and then linked into place, so a reader
	// never sees a half-written secret; when two processes race to create
	// it, the link of one fails and it reads the winner's.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".auth.secret-*")
	if err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(s) + "\n")
	if err := tmp.Chmod(0o600); werr == nil {
		werr = err
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return nil, fmt.Errorf("auth: secret %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateSecret(path)
	} else if err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	return s, nil
}
