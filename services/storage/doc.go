// Package storage serves the shared folders of a box: every account of the
// panel has a folder on the box's own storage, reachable over WebDAV (RFC
// 4918, golang.org/x/net/webdav) from file managers, phones and rclone, with
// a quota per account and read-only share links to single files.
//
// Every folder is opened as an os.Root, so no name (a "..", an absolute
// path, a symbolic link planted on the disk) reaches outside it; requests
// whose path or Destination header holds a ".." segment are refused before
// that. Quotas are enforced while a PUT (or COPY) writes, also when its
// length is not announced (chunked uploads): an upload goes to a temporary
// file that replaces the target only when it completed within the quota.
//
// The package does not authenticate: the caller (the panel) names the
// account of each request. The community vault, which keeps encrypted
// files on other boxes, is package storage/vault.
package storage
