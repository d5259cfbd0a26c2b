// Command pause is the kit's sandbox ("pause") process for the local cluster's containerd.
//
// A pod sandbox only needs a process that holds the pod's namespaces open and exits promptly
// when the runtime stops it. Upstream's pause is C; this Go twin is built from source on this
// machine so the image can be assembled offline (FROM scratch, static binary).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	os.Exit(0)
}
