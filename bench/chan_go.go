// chan_go.go - bench_chan's two measurements with goroutines, to run beside
// it in the same job (GOMAXPROCS=1 for the same single thread, pinned the
// same way), and bench_chan_xloop's between two threads (GOMAXPROCS=2,
// where Go puts the two goroutines on one thread or both as it likes):
//
//	pingpong: two unbuffered channels, one goroutine sends on the first and
//	          receives on the second, the other echoes; ns per message =
//	          elapsed / (2 * round trips).
//	stream:   one channel of capacity CAP (128), one goroutine sends n
//	          values, the other receives them; ns per message = elapsed / n.
//
// Each measurement is calibrated to about 200 ms, then run REPS times; one
// line per repetition, then median, min and max, as bench_chan prints them.
//
// usage: GOMAXPROCS=1 taskset -c 1 chan_go [REPS [pingpong|stream [CAP]]]
//        GOMAXPROCS=2 chan_go 7 stream 1024      (beside bench_chan_xloop)
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
)

var streamCap = 128
const targetNs = 200e6

func pingpong(n int) float64 {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	t := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		if <-pong != i {
			panic("pingpong: wrong value")
		}
	}
	el := time.Since(t)
	close(ping)
	<-pong
	return float64(el.Nanoseconds()) / float64(2*n)
}

func stream(n int) float64 {
	c := make(chan int, streamCap)
	done := make(chan time.Time)
	go func() {
		want := 0
		for v := range c {
			if v != want {
				panic("stream: wrong value")
			}
			want++
		}
		if want != n {
			panic("stream: values lost")
		}
		done <- time.Now()
	}()
	t := time.Now()
	for i := 0; i < n; i++ {
		c <- i
	}
	close(c)
	end := <-done
	return float64(end.Sub(t).Nanoseconds()) / float64(n)
}

func measure(what string, fn func(int) float64, reps int) {
	n := 10000
	per := fn(n)
	for per*float64(n) < targetNs/10 && n < 1<<40 {
		n *= 4
		per = fn(n)
	}
	if per < 0.1 {
		per = 0.1
	}
	n = int(targetNs / per)
	v := make([]float64, reps)
	for i := range v {
		v[i] = fn(n)
		fmt.Printf("go %s rep=%d ns=%.1f\n", what, i+1, v[i])
	}
	sort.Float64s(v)
	med := v[reps/2]
	if reps%2 == 0 {
		med = (v[reps/2-1] + v[reps/2]) / 2
	}
	fmt.Printf("go %s median=%.1f min=%.1f max=%.1f (reps=%d, n=%d)\n", what, med, v[0],
		v[reps-1], reps, n)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: chan_go [REPS 1..50 [pingpong|stream [CAP]]]")
	os.Exit(2)
}

func main() {
	reps := 5
	which := "both"
	if len(os.Args) > 1 {
		r, err := strconv.Atoi(os.Args[1])
		if err != nil || r < 1 || r > 50 {
			usage()
		}
		reps = r
	}
	if len(os.Args) > 2 {
		which = os.Args[2]
	}
	if len(os.Args) > 3 {
		c, err := strconv.Atoi(os.Args[3])
		if err != nil || c < 1 {
			usage()
		}
		streamCap = c
	}
	switch which {
	case "both":
		measure("pingpong", pingpong, reps)
		measure("stream", stream, reps)
	case "pingpong":
		measure("pingpong", pingpong, reps)
	case "stream":
		measure("stream", stream, reps)
	default:
		usage()
	}
}
