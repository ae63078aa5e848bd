// goclient: a Go TCP client for the cgroup mode tests. Go programs are
// statically linked and make raw system calls, so LD_PRELOAD never reaches
// them; the cgroup mode does.
//
//	goclient PORT off      connect to 127.0.0.1:PORT with Go's keepalive off (KeepAlive: -1)
//	goclient PORT default  connect with Go's own default keepalive (15 s, set after connect)
//
// Prints the options read back from the socket as one JSON line.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

const tcpUserTimeout = 18 // TCP_USER_TIMEOUT, not in package syscall

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goclient PORT off|default")
		os.Exit(2)
	}
	dialer := net.Dialer{Timeout: 10 * time.Second}
	if os.Args[2] == "off" {
		dialer.KeepAlive = -1
	}
	conn, err := dialer.Dial("tcp4", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "goclient:", err)
		os.Exit(1)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "goclient:", err)
		os.Exit(1)
	}
	report := map[string]int{}
	options := []struct {
		name       string
		level, opt int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
		{"TCP_USER_TIMEOUT", syscall.IPPROTO_TCP, tcpUserTimeout},
	}
	err = raw.Control(func(fd uintptr) {
		for _, o := range options {
			value, err := syscall.GetsockoptInt(int(fd), o.level, o.opt)
			if err != nil {
				value = -1
			}
			report[o.name] = value
		}
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "goclient:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(report)
	fmt.Println(string(out))
}
