// Package overlay will hold the encrypted TUN mesh between the boxes of a
// community. The foundation only reserves its place in the layout.
package overlay
