package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// latencyHist is a log-linear histogram of latencies in microseconds: 32
// buckets per power of two (about 3% relative error), up to 2^31 µs.
type latencyHist struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histBuckets = (32 - histSubBits) * histSub
)

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	exp := bits.Len64(us) - histSubBits // ≥ 1
	idx := exp*histSub + int(us>>(exp-1)) - histSub
	return min(idx, histBuckets-1)
}

// histLow returns the smallest value of bucket i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	exp := i / histSub
	return uint64(i%histSub+histSub) << (exp - 1)
}

// record adds one latency in nanoseconds (negative ones, from clocks a
// hair apart, count as zero).
func (h *latencyHist) record(ns int64) {
	h.counts[histIndex(uint64(max(ns, 0))/1000)]++
	h.n++
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the latency at quantile q (0..1), the middle of its bucket.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			return time.Duration((lo+hi)/2) * time.Microsecond
		}
	}
	return 0
}

// sparse returns the non-empty buckets as index, count pairs.
func (h *latencyHist) sparse() [][2]uint64 {
	var out [][2]uint64
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, [2]uint64{uint64(i), c})
		}
	}
	return out
}

func histFromSparse(s [][2]uint64) *latencyHist {
	h := &latencyHist{}
	for _, p := range s {
		if p[0] < histBuckets {
			h.counts[p[0]] += p[1]
			h.n += p[1]
		}
	}
	return h
}

// procStat is what /proc tells of a process.
type procStat struct {
	CPU time.Duration // user + system time, all threads
	RSS int64         // resident set, bytes
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times (100 on Linux
// everywhere kedge runs).
const clockTick = 10 * time.Millisecond

// readProc reads a process's CPU time and resident set from /proc.
func readProc(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name (field 2) may hold spaces; the fields after it start
	// after its closing parenthesis: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	st.CPU = time.Duration(ut+stt) * clockTick
	st.RSS, err = procStatusKB(pid, "VmRSS:")
	st.RSS *= 1024
	return st, err
}

// procStatusKB reads one "kB" line of /proc/PID/status.
func procStatusKB(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, key)
}

// goMem is a Go process's heap and stack in use after a GC, read from its
// pprof endpoint (the MemStats a heap profile ends with).
type goMem struct{ HeapInuse, StackInuse int64 }

func readGoMem(pprofAddr string) (goMem, error) {
	var m goMem
	resp, err := benchHTTP.Get("http://" + pprofAddr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return m, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "HeapInuse":
			m.HeapInuse = n
		case "Stack": // "inuse / sys"
			in, _, _ := strings.Cut(v, "/")
			m.StackInuse, _ = strconv.ParseInt(strings.TrimSpace(in), 10, 64)
		}
	}
	if m.HeapInuse == 0 {
		return m, fmt.Errorf("no MemStats at %s", pprofAddr)
	}
	return m, nil
}

// fetchHeap saves a heap profile (after a GC) from a pprof endpoint.
func fetchHeap(pprofAddr, path string) error {
	resp, err := benchHTTP.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// fetchProfile saves a CPU profile of d seconds from a pprof endpoint.
func fetchProfile(pprofAddr string, d time.Duration, path string) error {
	cl := &http.Client{Timeout: d + 30*time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// machineBusy is the CPU time every core of the machine spent on anything
// but idling, from /proc/stat: a run subtracts its own processes' share to
// tell how much else the machine was doing (another load skews a result).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}
