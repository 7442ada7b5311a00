package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
)

// certSource serves the relay listener's certificate and takes a new one
// when its files change: cert-manager and Kubernetes rotate a mounted
// Secret in place, and a certificate read once at start expired under a
// relay that ran on. A handshake looks at the files' modification times at
// most once every certCheck (two stats); SIGHUP reloads them at once
// (Reload). A pair that does not load (half written, the key not the
// certificate's), or whose certificate has expired while the one in use
// has not, leaves the one in use, with a warning: an expired certificate
// taken on a rotation that wrote an old file cut every client off. At
// start an expired certificate is an error; one that expires within
// certSoon is warned of, at start and at each load.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger

	cur     atomic.Pointer[tls.Certificate]
	checked atomic.Int64 // mono.Now of the last look at the files

	mu          sync.Mutex // one reload at a time; guards the stamps
	inUse, fail fileStamps // of the pair in use, of one that failed to load (not tried again)
}

// fileStamps tells two versions of the pair's files apart: modification
// times and sizes (a file rewritten in place within one tick of a coarse
// clock keeps its time, rarely its size as well).
type fileStamps struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func (a fileStamps) same(b fileStamps) bool {
	return a.certMod.Equal(b.certMod) && a.keyMod.Equal(b.keyMod) && a.certSize == b.certSize && a.keySize == b.keySize
}

// certCheck is how often a handshake looks whether the files changed.
var certCheck = 30 * time.Second

// certSoon: a certificate loaded with less time than this left is warned of.
const certSoon = 7 * 24 * time.Hour

// newCertSource loads the pair; an error names server.tls_cert.
func newCertSource(certFile, keyFile string, log *slog.Logger) (*certSource, error) {
	s := &certSource{certFile: certFile, keyFile: keyFile, log: log}
	s.checked.Store(mono.Now())
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("server.tls_cert: %w", err)
	}
	return s, nil
}

// config is the listener's TLS configuration, its certificate from s.
func (s *certSource) config() *tls.Config {
	return &tls.Config{GetCertificate: s.get, MinVersion: tls.VersionTLS12}
}

// get is tls.Config.GetCertificate.
func (s *certSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := mono.Now()
	if last := s.checked.Load(); now-last >= int64(certCheck) && s.checked.CompareAndSwap(last, now) {
		s.reloadChanged()
	}
	return s.cur.Load(), nil
}

// reloadChanged reloads the pair when a file changed since it was loaded.
func (s *certSource) reloadChanged() {
	st, err := s.stamps()
	if err != nil {
		s.log.Warn("server.tls_cert: cannot look at the certificate files; the certificate in use stays", "err", err)
		return
	}
	s.mu.Lock()
	changed := !st.same(s.inUse) && !st.same(s.fail)
	s.mu.Unlock()
	if changed {
		_ = s.reload()
	}
}

// reload loads the pair again; on failure the certificate in use stays.
func (s *certSource) reload() error {
	if err := s.load(); err != nil {
		s.log.Warn("server.tls_cert: the new certificate is refused (it does not load, or has expired); the one in use stays", "err", err)
		return err
	}
	leaf := s.cur.Load().Leaf
	s.log.Info("server.tls_cert: certificate loaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	return nil
}

// notAfter is when the certificate in use expires.
func (s *certSource) notAfter() time.Time { return s.cur.Load().Leaf.NotAfter }

// checkValidity refuses leaf when it has expired, unless the certificate in
// use (cur, nil at start) has too; it warns when leaf expires within
// certSoon or is not valid yet (a clock behind the issuer's: taken all the
// same, or a rotation would leave the old one in use until it expired).
func (s *certSource) checkValidity(leaf *x509.Certificate, cur *tls.Certificate) error {
	now := time.Now()
	if now.After(leaf.NotAfter) && (cur == nil || !now.After(cur.Leaf.NotAfter)) {
		return fmt.Errorf("certificate %q expired at %s", leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	switch {
	case now.Before(leaf.NotBefore):
		s.log.Warn("server.tls_cert: the certificate is not valid yet (this machine's clock or the issuer's is off); clients will refuse it until then",
			"subject", leaf.Subject.String(), "not_before", leaf.NotBefore)
	case leaf.NotAfter.Sub(now) < certSoon:
		s.log.Warn("server.tls_cert: the certificate expires soon; rotate it",
			"subject", leaf.Subject.String(), "not_after", leaf.NotAfter, "left", leaf.NotAfter.Sub(now).Round(time.Minute).String())
	}
	return nil
}

func (s *certSource) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.stamps()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err == nil && pair.Leaf == nil {
		pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
	}
	if err == nil {
		err = s.checkValidity(pair.Leaf, s.cur.Load())
	}
	if err != nil {
		s.fail = st
		return err
	}
	s.cur.Store(&pair)
	s.inUse = st
	return nil
}

func (s *certSource) stamps() (fileStamps, error) {
	ci, err := os.Stat(s.certFile)
	if err != nil {
		return fileStamps{}, err
	}
	ki, err := os.Stat(s.keyFile)
	if err != nil {
		return fileStamps{}, err
	}
	return fileStamps{certMod: ci.ModTime(), keyMod: ki.ModTime(), certSize: ci.Size(), keySize: ki.Size()}, nil
}
