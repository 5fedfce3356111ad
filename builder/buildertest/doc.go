// Package buildertest holds what tests of builder executors share: the
// input trees every executor's tests build from (a static busybox, a data
// tree, and a tree present in the store but not an input) under fixed store
// names, and helpers to read an executor's outputs back.
package buildertest
