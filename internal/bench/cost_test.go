package bench

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseIperfCSV(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    iperfReport
		wantErr bool
	}{
		{"client", "20261203141000,10.1.2.10,40000,239.1.2.3,5001,1,0.0-5.0,1000000000,1600000000\n",
			iperfReport{seconds: 5, bytes: 1e9, bitsPerSec: 1.6e9}, false},
		{"server, last line wins",
			"20261203141000,239.1.2.3,5001,10.1.2.10,40000,3,0.0-1.0,10,80,0.1,0,7,0.0,0\n" +
				"20261203141001,239.1.2.3,5001,10.1.2.10,40000,3,0.0-4.5,900000000,1600000000.5,0.012,25,612000,0.004,0\n",
			iperfReport{seconds: 4.5, bytes: 9e8, bitsPerSec: 1600000000.5, lost: 25, total: 612000}, false},
		{"text before the report", "Server listening on UDP port 5001\nJoining multicast group 239.1.2.3\n" +
			"x,239.1.2.3,5001,10.1.2.10,1,3,0.0-2.0,100,400\n", iperfReport{seconds: 2, bytes: 100, bitsPerSec: 400}, false},
		{"no report", "Server listening on UDP port 5001\n", iperfReport{}, true},
		{"bad bytes", "x,a,1,b,2,3,0.0-2.0,lots,400\n", iperfReport{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIperfCSV(tc.out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseIperfCSV() error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(iperfReport{})); diff != "" {
				t.Errorf("parseIperfCSV() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCostOf(t *testing.T) {
	tests := []struct {
		name string
		recs []procCPU
		want cpuCost
	}{
		{"none", nil, cpuCost{}},
		{"sender and two receivers", []procCPU{
			{"shoal send", "tx", 3 * time.Second}, {"shoal receive 0", "rx", time.Second}, {"shoal receive 1", "rx", 2 * time.Second}},
			cpuCost{tx: 3 * time.Second, rxSum: 3 * time.Second, rxMean: 1500 * time.Millisecond, rxMax: 2 * time.Second}},
		{"http server and a curl", []procCPU{{"curl 0", "rx", time.Second}, {"http server", "tx", time.Second / 2}},
			cpuCost{tx: time.Second / 2, rxSum: time.Second, rxMean: time.Second, rxMax: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, costOf(tc.recs), cmp.AllowUnexported(cpuCost{})); diff != "" {
				t.Errorf("costOf() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoles(t *testing.T) {
	for name, want := range map[string]string{
		"shoal send": "tx", "shoal receive 3": "rx", "udp-sender": "tx", "udp-receiver 0": "rx", "uftp": "tx", "uftpd 1": "rx",
		"http server": "tx", "curl 2": "rx", "iperf blaster": "tx", "iperf sink 0": "rx",
	} {
		if got := (&proc{name: name}).role(); got != want {
			t.Errorf("role of %q = %s, want %s", name, got, want)
		}
	}
}

func TestPerGiBAndPayloadRate(t *testing.T) {
	tests := []struct {
		name      string
		got, want float64
	}{
		{"2 s over 512 MiB", perGiB(2*time.Second, 512<<20), 4},
		{"nothing received", perGiB(time.Second, 0), 0},
		{"payload at MTU 1500", float64(payloadRate(1514e6, 1500)), 1472e6},
		{"payload at MTU 9000", float64(payloadRate(9014e6, 9000)), 8972e6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}
