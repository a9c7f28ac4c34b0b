// Package services will hold community-wide publication and discovery of
// services (the catalog, on an existing gossip engine) and the built-in
// services of a box (the shared proxy, the update agent). The foundation only
// reserves its place in the layout.
package services
