package app

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTLSCertificateRotation: the relay's listener takes a certificate
// rotated in place (as cert-manager and a mounted Secret do) at the next
// handshake once its files changed, keeps the one in use when the new files
// do not load, and reloads them at once on SIGHUP (Reload). Before, the
// certificate read at start was served until the process ended, expired or
// not.
func TestTLSCertificateRotation(t *testing.T) {
	r, addr, _ := startTLSRelay(t)
	certFile, keyFile := r.app.cfg.Server.TLSCert, r.app.cfg.Server.TLSKey
	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	// rotate puts a new pair in place of the served one, renamed over it
	// as a Secret's update swaps its files.
	stamp := time.Now()
	rotate := func() {
		t.Helper()
		cf, kf, _ := selfSigned(t, t.TempDir())
		stamp = stamp.Add(2 * time.Second)
		for _, p := range [][2]string{{cf, certFile}, {kf, keyFile}} {
			if err := os.Chtimes(p[0], stamp, stamp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p[0], p[1]); err != nil {
				t.Fatal(err)
			}
		}
	}

	saved := certCheck
	t.Cleanup(func() { certCheck = saved })
	certCheck = 0 // every handshake looks at the files

	first := served()
	rotate()
	keyStamp := stamp // the key file's time from now on
	second := served()
	if bytes.Equal(first, second) {
		t.Fatal("the rotated certificate was not served")
	}
	if again := served(); !bytes.Equal(again, second) {
		t.Fatal("the served certificate changed with no new files")
	}

	// A half-written certificate file: the one in use stays.
	stamp = stamp.Add(2 * time.Second)
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(certFile, stamp, stamp)
	if got := served(); !bytes.Equal(got, second) {
		t.Fatal("a certificate file that does not load replaced the one in use")
	}
	// Its write then ends within the same tick of the file system's clock:
	// the same times as when it failed, another size. The pair is taken.
	cf, kf, _ := selfSigned(t, t.TempDir())
	for _, p := range []struct {
		from, to string
		at       time.Time
	}{{cf, certFile, stamp}, {kf, keyFile, keyStamp}} {
		b, err := os.ReadFile(p.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(p.to, p.at, p.at)
	}
	third := served()
	if bytes.Equal(third, second) {
		t.Fatal("a pair finished within the same file time as a half-written one was never taken")
	}
	second = third

	// SIGHUP reloads at once, whatever the time since the last look.
	certCheck = time.Hour
	rotate()
	if got := served(); !bytes.Equal(got, second) {
		t.Fatal("the files were looked at before certCheck")
	}
	_ = r.app.Reload(filepath.Join(t.TempDir(), "no-config.yaml"), "") // the config reload fails; the certificate does not
	if got := served(); bytes.Equal(got, second) {
		t.Fatal("SIGHUP did not reload the certificate")
	}
}

// TestTLSCertificateExpired: an expired certificate is refused at start
// (an error naming it) and on a rotation, where the one in use stays and
// the reload counts as refused; relay_tls_cert_expiry_timestamp_seconds
// says when the one in use expires. Before, an expired pair written by a
// rotation was taken (logged at INFO) and every client was cut off.
func TestTLSCertificateExpired(t *testing.T) {
	dir := t.TempDir()
	ecf, ekf, _ := selfSignedValid(t, dir, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if _, err := newCertSource(ecf, ekf, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired certificate at start: %v; want an error saying it expired", err)
	}

	r, addr, _ := startTLSRelay(t)
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	before := served()
	for _, p := range [][2]string{{ecf, r.app.cfg.Server.TLSCert}, {ekf, r.app.cfg.Server.TLSKey}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.app.Reload(filepath.Join(t.TempDir(), "no-config.yaml"), "")
	if got := served(); !bytes.Equal(got.Raw, before.Raw) {
		t.Fatalf("an expired certificate (not after %s) replaced the one in use", got.NotAfter)
	}
	var m bytes.Buffer
	r.app.metrics.WritePrometheus(&m)
	want := fmt.Sprintf("relay_tls_cert_expiry_timestamp_seconds %d\n", before.NotAfter.Unix())
	if !strings.Contains(m.String(), want) || !strings.Contains(m.String(), `relay_config_reloads_total{result="error"} 1`) {
		t.Fatalf("metrics lack %q or the refused reload:\n%s", want, grepLines(m.String(), "tls_cert", "config_reloads"))
	}
}

// grepLines returns the lines of s that hold any of subs.
func grepLines(s string, subs ...string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				b.WriteString(line)
				break
			}
		}
	}
	return b.String()
}
