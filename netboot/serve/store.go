// store.go opens the inventory --store names: the machines file
// (--inventory) or etcd, over TLS for etcds://.

package serve

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-project/shoal/netboot/inventory"
	"github.com/shoal-project/shoal/netboot/inventory/etcdstore"
)

// StoreFile is --store's default: the machines file --inventory names.
const StoreFile = "file"

// ErrInventoryWithEtcd says that --inventory (the file store's) was given
// with --store etcd://.
var ErrInventoryWithEtcd = errors.New("--inventory names the machines file of --store file; with --store etcd:// the machines are in etcd (docs/netboot.md, \"Inventory on etcd\")")

// openInventory opens cfg's inventory; httpAddr (the HTTP listener's)
// names this server in etcd's status records and history, with the host's
// name.
func openInventory(cfg Config, httpAddr string, log *slog.Logger) (inventory.Backend, error) {
	switch {
	case cfg.Store == "" || cfg.Store == StoreFile:
		return inventory.Open(cfg.Inventory, cfg.Unknown)
	case strings.HasPrefix(cfg.Store, "etcd://") || strings.HasPrefix(cfg.Store, "etcds://"):
		if cfg.Inventory != "" {
			return nil, ErrInventoryWithEtcd
		}
		eps, err := etcdstore.ParseURL(cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("--store: %w", err)
		}
		tc, err := storeTLS(cfg)
		if err != nil {
			return nil, err
		}
		host, _ := os.Hostname()
		return etcdstore.Open(etcdstore.Config{Endpoints: eps, TLS: tc, Unknown: cfg.Unknown, Server: host + "@" + httpAddr, Log: log})
	}
	return nil, fmt.Errorf("--store %q: want %q or etcd://HOST[:PORT][,HOST[:PORT]…]", cfg.Store, StoreFile)
}

// ErrStoreTLSFlags says that --store-ca, --store-cert or --store-key was
// given without --store etcds://, or --store-cert without --store-key.
var ErrStoreTLSFlags = errors.New("--store-ca, --store-cert and --store-key are for --store etcds://, and --store-cert and --store-key go together")

// storeTLS builds the TLS configuration of --store etcds:// from
// --store-ca, --store-cert and --store-key; nil for etcd://.
func storeTLS(cfg Config) (*tls.Config, error) {
	secure := strings.HasPrefix(cfg.Store, "etcds://")
	given := cfg.StoreCA != "" || cfg.StoreCert != "" || cfg.StoreKey != ""
	if (given && !secure) || (cfg.StoreCert == "") != (cfg.StoreKey == "") {
		return nil, ErrStoreTLSFlags
	}
	if !secure {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.StoreCA != "" {
		pem, err := os.ReadFile(cfg.StoreCA)
		if err != nil {
			return nil, fmt.Errorf("--store-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--store-ca %s: no PEM certificate in it", cfg.StoreCA)
		}
	}
	if cfg.StoreCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.StoreCert, cfg.StoreKey)
		if err != nil {
			return nil, fmt.Errorf("--store-cert, --store-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// remoteStore is an inventory kept elsewhere (etcdstore): it can be
// unreachable, and writes wait for it.
type remoteStore interface {
	Down() bool
	Queued() int
}

// storeMetrics exports whether inv's store answers and what waits for it,
// when inv is a remoteStore.
func storeMetrics(reg *prometheus.Registry, inv inventory.Backend) error {
	rs, ok := inv.(remoteStore)
	if !ok {
		return nil
	}
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_serve_inventory_store_up",
		Help: "1 while the inventory store (etcd) answers, 0 while it is down and boots are answered from the cache."},
		func() float64 {
			if rs.Down() {
				return 0
			}
			return 1
		})
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_serve_inventory_store_queued",
		Help: "Writes (statuses, history entries, turns to local) waiting for the inventory store."},
		func() float64 { return float64(rs.Queued()) })
	for _, c := range []prometheus.Collector{up, queued} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("inventory store metrics: %w", err)
		}
	}
	return nil
}
