package state

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// formatVersion is the only version of node.json this package reads and
// writes.
const formatVersion = 1

// maxFileSize bounds how much of node.json is read; a valid file is about
// 150 bytes.
const maxFileSize = 64 << 10

// maxNameLen is the longest node name in bytes, the length of a DNS label.
const maxNameLen = 63

// fileV1 is node.json as it is stored. Fields are strings so that every
// validation error can name the field it is about.
type fileV1 struct {
	Version    int    `json:"version"`
	Name       string `json:"name"`
	Created    string `json:"created"`
	PrivateKey string `json:"private_key"`
}

// encode returns the node.json bytes for n.
func encode(n *Node) ([]byte, error) {
	b, err := json.MarshalIndent(fileV1{
		Version:    formatVersion,
		Name:       n.Name,
		Created:    n.Created.UTC().Format(time.RFC3339),
		PrivateKey: base64.StdEncoding.EncodeToString(n.PrivateKey.Bytes()),
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding node state: %w", err)
	}
	return append(b, '\n'), nil
}

// decode parses and validates node.json. Any error means the file is corrupt.
func decode(b []byte) (*Node, error) {
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes", maxFileSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f fileV1
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("parsing json: trailing data after the object")
	}

	switch {
	case f.Version == 0:
		return nil, errors.New(`field "version": missing`)
	case f.Version != formatVersion:
		return nil, fmt.Errorf(`field "version": unsupported version %d, want %d`, f.Version, formatVersion)
	}
	if err := checkName(f.Name); err != nil {
		return nil, fmt.Errorf(`field "name": %w`, err)
	}
	if f.Created == "" {
		return nil, errors.New(`field "created": missing`)
	}
	created, err := time.Parse(time.RFC3339, f.Created)
	if err != nil {
		return nil, fmt.Errorf(`field "created": %w`, err)
	}
	if f.PrivateKey == "" {
		return nil, errors.New(`field "private_key": missing`)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(f.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf(`field "private_key": %w`, err)
	}
	if len(raw) != keySize {
		return nil, fmt.Errorf(`field "private_key": %d bytes, want %d`, len(raw), keySize)
	}
	key, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf(`field "private_key": %w`, err)
	}
	return &Node{Name: f.Name, Created: created.UTC(), PrivateKey: key}, nil
}

// checkName reports whether name can be a node name: 1 to 63 bytes of UTF-8
// without control characters or surrounding spaces.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("missing")
	case len(name) > maxNameLen:
		return fmt.Errorf("%d bytes long, at most %d allowed", len(name), maxNameLen)
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case name != strings.TrimSpace(name):
		return errors.New("starts or ends with a space")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}
