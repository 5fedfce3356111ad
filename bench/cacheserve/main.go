// Command cacheserve serves a directory (a Nix binary cache) over HTTP on
// loopback for benchmarks, printing the address it listens on.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: cacheserve [-addr HOST:PORT] DIR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cacheserve:", err)
		os.Exit(1)
	}
	fmt.Println("http://" + ln.Addr().String())
	if err := http.Serve(ln, http.FileServer(http.Dir(flag.Arg(0)))); err != nil {
		fmt.Fprintln(os.Stderr, "cacheserve:", err)
		os.Exit(1)
	}
}
