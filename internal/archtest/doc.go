// Package archtest holds tests of the source tree's architecture: package
// documentation and the direction of dependencies. It has no code of its own.
package archtest
