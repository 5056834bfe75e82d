// Package layout holds the test that keeps the repository's shape: the
// design card's top level, and imports that only point down or sideways
// (docs/design.md §2). It has no code of its own.
package layout
