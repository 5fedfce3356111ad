// Package qmp is a client of the QEMU Machine Protocol, the JSON protocol
// through which castor drives a QEMU process's life: the greeting and
// capabilities negotiation, commands (query-status, cont, system_powerdown,
// quit) and the asynchronous events QEMU sends (SHUTDOWN with its reason,
// STOP, RESUME…).
//
// A Client owns one connection (castor hands QEMU one end of a socket pair
// with -chardev socket,fd=N, so there is no socket file to clean up). One
// goroutine reads the connection: replies go to the command waiting for
// them (commands are sent one at a time, as QMP answers in order), events
// go to Events, which is buffered and closed when the connection ends.
package qmp
