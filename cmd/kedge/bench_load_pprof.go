package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv, when set to a loopback address, makes any kedge process serve
// Go's profiling endpoints (/debug/pprof/...) there. `kedge bench` sets it
// on the nodes it starts to read their heap and profile them under load; it
// is a debugging aid, off unless asked for, and refuses non-loopback
// addresses.
const pprofEnv = "KEDGEPPROF_ADDR" // not KEDGE_…: those are configuration keys

func init() {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		slog.Warn(pprofEnv+" must be a loopback host:port; profiling endpoints not served", "addr", addr)
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		slog.Warn("profiling endpoints not served", "addr", addr, "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.Serve(ln, mux) }()
}
