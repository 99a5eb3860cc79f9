package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// iocopyMain is `bench iocopy-relay -listen A -target U -cert C -key K`: the
// goroutine design of other Go TLS proxies (ghostunnel's shape): handshake,
// dial the upstream, one io.Copy per direction, CloseWrite when a direction
// ends, close both when both have ended. It runs as its own process so its
// RSS, CPU and file descriptors are its own.
func iocopyMain(args []string) error {
	fs := flag.NewFlagSet("iocopy-relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "TLS address to listen on")
	target := fs.String("target", "", "plaintext upstream address")
	certFile := fs.String("cert", "", "PEM chain")
	keyFile := fs.String("key", "", "PEM key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseNoFile()
	cfg, err := serverTLSConfig(*certFile, *keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "iocopy-relay listening on %s -> %s\n", ln.Addr(), *target)
	for failures := 0; failures < 1000; {
		c, err := ln.Accept()
		if err != nil {
			failures++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		failures = 0
		go relayConn(tls.Server(c, cfg), *target)
	}
	return fmt.Errorf("accept kept failing")
}

// relayConn handles one client connection.
func relayConn(client *tls.Conn, target string) {
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if err := client.Handshake(); err != nil {
		return
	}
	_ = client.SetDeadline(time.Time{})
	up, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, client)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, up)
		_ = client.CloseWrite()
	}()
	wg.Wait()
}
