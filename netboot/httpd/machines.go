// machines.go serves the machines as the server knows them: the machine
// list, one machine, and their metrics. Nothing here is secret (no
// credential, token or key is in an api.Machine): anyone who reaches the
// server may read it.

package httpd

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-project/shoal/netboot/inventory"
)

// machines answers GET /api/v1/machines: every machine, sorted by MAC.
func (s *Server) machines(w http.ResponseWriter, r *http.Request) {
	ms := s.cfg.Inventory.Machines()
	now := s.cfg.Now()
	for i := range ms {
		ms[i].Silent = ms[i].SilentAt(now, s.cfg.SilentAfter)
	}
	s.writeJSON(w, ms)
}

// machine answers GET /api/v1/machines/{mac}: the machine as its boot
// script sees it (an unknown MAC let in by the unknown-machine policy is
// that policy's entry), 404 for a MAC the server does not boot.
func (s *Server) machine(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	m, ok := s.lookup(w, r)
	if !ok {
		return
	}
	m.Silent = m.SilentAt(s.cfg.Now(), s.cfg.SilentAfter)
	s.writeJSON(w, m)
}

// lookup finds the machine of the request's {mac}; when there is none it
// answers (400 for a bad MAC, 404 for one the server does not boot) and
// returns false.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (inventory.Machine, bool) {
	mac, err := inventory.CanonicalMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return inventory.Machine{}, false
	}
	m, err := s.cfg.Inventory.Lookup(mac)
	if errors.Is(err, inventory.ErrUnknown) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return inventory.Machine{}, false
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return inventory.Machine{}, false
	}
	return m, true
}

// writeJSON answers with v as indented JSON, never cached.
func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		s.log.Warn("http: encode machines", "err", err)
	}
}

// machineCollector exports the inventory's machines at each scrape.
type machineCollector struct{ inv inventory.Backend }

var (
	machinesDesc = prometheus.NewDesc("shoal_serve_machines",
		"Machines known to the server, by action and last reported state.", []string{"action", "state"}, nil)
	progressDesc = prometheus.NewDesc("shoal_serve_machine_progress_ratio",
		"Last reported progress of each machine (0..1).", []string{"mac"}, nil)
)

func (c machineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- machinesDesc
	ch <- progressDesc
}

func (c machineCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ action, state string }
	counts := map[key]int{}
	for _, m := range c.inv.Machines() {
		st := string(m.Status.State)
		if st == "" {
			st = "none"
		}
		counts[key{string(m.Action), st}]++
		ch <- prometheus.MustNewConstMetric(progressDesc, prometheus.GaugeValue, m.Status.Progress, m.MAC)
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(machinesDesc, prometheus.GaugeValue, float64(n), k.action, k.state)
	}
}
