package serve

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory/etcdstore"
)

// TestStoreTLS: a cluster that serves TLS and asks for client
// certificates (--client-cert-auth). With etcds://, its CA and a client
// certificate it signed, the server boots the machine put through
// etcdctl; without a client certificate, with another CA, with a client
// certificate of another CA or over plain etcd:// it cannot open the
// inventory; TLS flags without etcds:// are refused.
func TestStoreTLS(t *testing.T) {
	certs := etcdtest.MakeCerts(t)
	c := etcdtest.StartWith(t, 1, etcdtest.Options{TLS: &certs})
	const mac = "52:54:00:00:0b:01"
	putMachine(c, mac, "debian-12", api.Reimage)
	secure := c.StoreURL()
	plain := "etcd://" + secure[len("etcds://"):]

	cfg := Default()
	cfg.Store, cfg.StoreCA, cfg.StoreCert, cfg.StoreKey = secure, certs.CA, certs.ClientCert, certs.ClientKey
	_, cl := etcdServerWith(t, "tls", cfg)
	m, err := cl.Machine(context.Background(), mac)
	if err != nil || m.Image != "debian-12" || m.Action != api.Reimage {
		t.Errorf("machine through the TLS store = %+v %v, want the one put with etcdctl", m, err)
	}

	for _, tc := range []struct {
		name             string
		store, ca        string
		cert, key        string
		flagErr, openErr bool
	}{
		{"CA and client certificate", secure, certs.CA, certs.ClientCert, certs.ClientKey, false, false},
		{"no client certificate", secure, certs.CA, "", "", false, true},
		{"another CA", secure, certs.OtherCA, certs.ClientCert, certs.ClientKey, false, true},
		{"a client certificate of another CA", secure, certs.CA, certs.OtherCert, certs.OtherKey, false, true},
		{"plain etcd:// to a TLS cluster", plain, "", "", "", false, true},
		{"--store-ca with etcd://", plain, certs.CA, "", "", true, false},
		{"--store-cert without --store-key", secure, certs.CA, certs.ClientCert, "", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Store, cfg.StoreCA, cfg.StoreCert, cfg.StoreKey = tc.store, tc.ca, tc.cert, tc.key
			tlsConf, err := storeTLS(cfg)
			if got := errors.Is(err, ErrStoreTLSFlags); got != tc.flagErr {
				t.Fatalf("storeTLS = %v; ErrStoreTLSFlags %v, want %v", err, got, tc.flagErr)
			}
			if err != nil {
				return
			}
			eps, err := etcdstore.ParseURL(tc.store)
			if err != nil {
				t.Fatal(err)
			}
			s, err := etcdstore.Open(etcdstore.Config{Endpoints: eps, TLS: tlsConf, OpenTimeout: time.Second})
			if err == nil {
				defer s.Close()
				if _, err := s.Lookup(mac); err != nil {
					t.Errorf("Lookup through the TLS store: %v", err)
				}
			}
			if got := err != nil; got != tc.openErr {
				t.Errorf("Open = %v; failed %v, want %v", err, got, tc.openErr)
			}
		})
	}
}
