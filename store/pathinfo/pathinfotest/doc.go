// Package pathinfotest is the conformance suite every pathinfo.Service
// backend and wrapper runs.
package pathinfotest
