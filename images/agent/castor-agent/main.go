// Command castor-agent is the guest agent, the /init of castor's
// micro-VMs (see package agent). images.BuildAgent builds it as a static
// binary (CGO_ENABLED=0).
package main

import "github.com/castor-nix/castor/images/agent"

func main() { agent.Main() }
