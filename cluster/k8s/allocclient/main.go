// Command allocclient calls a device plugin the way the kubelet does and prints latency
// figures as one JSON object. It is built in the module that builds the local cluster's
// kubelet, so it speaks through the same grpc-go and device-plugin API versions; the
// benchmark bench/peer_allocate.py runs it against simdev's plugin and the Go peer.
//
// Modes:
//
//	preferred  GetPreferredAllocation of -size devices out of every device, none held
//	unread     the same 10,000-ID request, but must_include alone answers it: the cost
//	           of carrying the message, with nothing for the plugin to rank
//	sequential Allocate of one device per call, going round the devices
//	concurrent Allocate from -clients connections at once, for -seconds at most
//
// Several modes, comma-separated, run in turn and print one JSON line each. Every loop is
// bounded by -calls and by -seconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type result struct {
	Mode      string  `json:"mode"`
	Devices   int     `json:"devices"`
	Calls     int     `json:"calls"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// The plugin's CPU time per call (user and system), when -pid names its process.
	CPUUsPerCall float64 `json:"cpu_us_per_call,omitempty"`
}

// cpuSeconds is a process's user and system time so far, from /proc/PID/stat (in clock
// ticks of USER_HZ, which Linux fixes at 100 for every architecture it reports to).
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err := strconv.ParseFloat(fields[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(fields[12], 64)
	if err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
}

func dial(socket string) (*grpc.ClientConn, api.DevicePluginClient, error) {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}),
	)
	if err != nil {
		return nil, nil, err
	}
	return conn, api.NewDevicePluginClient(conn), nil
}

// devices reads the plugin's first ListAndWatch message, as the kubelet does on registration.
func devices(client api.DevicePluginClient) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.ListAndWatch(ctx, &api.Empty{})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(first.Devices))
	for _, d := range first.Devices {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return float64(sorted[i].Microseconds()) / 1000
}

// timed makes up to calls calls (fewer if limit passes first) and reports their latencies.
func timed(mode string, count, calls int, limit time.Duration, call func(n int) error) (result, error) {
	latencies := make([]time.Duration, 0, calls)
	began := time.Now()
	for n := 0; n < calls && time.Since(began) < limit; n++ {
		t := time.Now()
		if err := call(n); err != nil {
			return result{}, err
		}
		latencies = append(latencies, time.Since(t))
	}
	return summary(mode, count, latencies, time.Since(began)), nil
}

func summary(mode string, count int, latencies []time.Duration, elapsed time.Duration) result {
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	r := result{Mode: mode, Devices: count, Calls: len(latencies), Seconds: elapsed.Seconds()}
	if elapsed > 0 {
		r.PerSecond = float64(len(latencies)) / elapsed.Seconds()
	}
	r.P50Ms, r.P99Ms = percentile(latencies, 50), percentile(latencies, 99)
	if len(latencies) > 0 {
		r.MaxMs = float64(latencies[len(latencies)-1].Microseconds()) / 1000
	}
	return r
}

func allocate(client api.DevicePluginClient, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Allocate(ctx, &api.AllocateRequest{
		ContainerRequests: []*api.ContainerAllocateRequest{{DevicesIds: []string{id}}},
	})
	return err
}

func preferred(client api.DevicePluginClient, ids, mustInclude []string, size int32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.GetPreferredAllocation(ctx, &api.PreferredAllocationRequest{
		ContainerRequests: []*api.ContainerPreferredAllocationRequest{{
			AvailableDeviceIDs:   ids,
			MustIncludeDeviceIDs: mustInclude,
			AllocationSize:       size,
		}},
	})
	if err == nil && len(resp.ContainerResponses[0].DeviceIDs) != int(size) {
		err = fmt.Errorf("GetPreferredAllocation gave %d devices, wanted %d",
			len(resp.ContainerResponses[0].DeviceIDs), size)
	}
	return err
}

// concurrent runs clients connections at once, each making up to calls Allocate calls.
func concurrent(socket string, ids []string, clients, calls int, limit time.Duration) (result, error) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	began := time.Now()
	for c := 0; c < clients; c++ {
		conn, client, err := dial(socket)
		if err != nil {
			return result{}, err
		}
		defer conn.Close()
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, calls)
			for n := 0; n < calls && time.Since(began) < limit; n++ {
				t := time.Now()
				if err := allocate(client, ids[(c+n)%len(ids)]); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	return summary("concurrent", len(ids), latencies, time.Since(began)), nil
}

func run() ([]result, error) {
	socket := flag.String("socket", "", "the plugin's unix socket")
	mode := flag.String("mode", "preferred", "preferred, unread, sequential or concurrent; several, comma-separated, run in turn")
	calls := flag.Int("calls", 200, "calls of the sequential modes")
	clientCalls := flag.Int("client-calls", 500, "calls per client in concurrent mode")
	warmup := flag.Int("warmup", 20, "untimed calls first")
	size := flag.Int("size", 8, "devices asked for in preferred mode")
	clients := flag.Int("clients", 8, "connections in concurrent mode")
	seconds := flag.Float64("seconds", 30, "time limit of the timed calls")
	pid := flag.Int("pid", 0, "the plugin's process, to report its CPU time per call")
	flag.Parse()
	if *socket == "" {
		return nil, fmt.Errorf("-socket is required")
	}
	limit := time.Duration(*seconds * float64(time.Second))
	conn, client, err := dial(*socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// One ListAndWatch per run, as one kubelet opens one: a plugin may limit its streams.
	ids, err := devices(client)
	if err != nil {
		return nil, fmt.Errorf("ListAndWatch: %w", err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("the plugin lists no devices")
	}
	var results []result
	for _, m := range strings.Split(*mode, ",") {
		var before float64
		if *pid > 0 {
			if before, err = cpuSeconds(*pid); err != nil {
				return nil, err
			}
		}
		n := *calls
		if m == "concurrent" {
			n = *clientCalls
		}
		r, err := measure(m, socket, client, ids, n, *warmup, int32(*size), *clients, limit)
		if err != nil {
			return nil, err
		}
		if *pid > 0 {
			after, err := cpuSeconds(*pid)
			if err != nil {
				return nil, err
			}
			// Warm-up calls included: they ran under the same clock.
			r.CPUUsPerCall = (after - before) / float64(r.Calls+*warmup) * 1e6
		}
		results = append(results, r)
	}
	return results, nil
}

// measure runs one mode against the plugin.
func measure(
	mode string, socket *string, client api.DevicePluginClient, ids []string,
	calls, warmup int, size int32, clients int, limit time.Duration,
) (result, error) {
	var call func(n int) error
	switch mode {
	case "preferred":
		call = func(int) error { return preferred(client, ids, nil, size) }
	case "unread":
		call = func(int) error { return preferred(client, ids, ids[:1], 1) }
	case "sequential", "concurrent":
		call = func(n int) error { return allocate(client, ids[n%len(ids)]) }
	default:
		return result{}, fmt.Errorf("unknown -mode %q", mode)
	}
	for n := 0; n < warmup; n++ {
		if err := call(n); err != nil {
			return result{}, err
		}
	}
	if mode == "concurrent" {
		return concurrent(*socket, ids, clients, calls, limit)
	}
	return timed(mode, len(ids), calls, limit, call)
}

func main() {
	results, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "allocclient:", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	for _, r := range results {
		if err := out.Encode(r); err != nil {
			os.Exit(1)
		}
	}
}
