package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestChaosNoSecretInAnyOutput runs the relay binary at log level debug with
// ClickHouse and /metrics on its own address, sends requests of every
// outcome, and greps every output for the relay key, a wrong key a client
// presented and the provider key: the debug log, every column of every row,
// the /metrics text and every response (headers and body).
func TestChaosNoSecretInAnyOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	metricsAddr := servicetest.FreeAddr(t)
	p := startRelayProc(t, "", fmt.Sprintf("metrics:\n  addr: %s\nstorage:\n  clickhouse:\n    url: %s\n    database: %s\n    flush_interval: 200ms\n", metricsAddr, url, db))
	const wrongKey = "sk-wrong-but-secret-789"
	secrets := []string{relayKey, providerKey, wrongKey}
	var outputs strings.Builder
	send := func(path, auth string, hdr map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, p.base+path, strings.NewReader(`{"model":"m","stream":true}`))
		req.Header.Set("Authorization", "Bearer "+auth)
		req.Header.Set("X-Api-Key", auth)
		req.Header.Set("Cookie", "session="+auth)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := procClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&outputs, "%v\n%s\n", resp.Header, b)
		return resp.StatusCode
	}
	statuses := []int{
		send("/v1/chat/completions", relayKey, map[string]string{mockllm.HeaderChunks: "3"}),
		send("/v1/chat/completions", relayKey, map[string]string{mockllm.HeaderStatus: "401"}), // the provider refuses
		send("/v1/chat/completions", wrongKey, nil),
		send("/v1/unknown", relayKey, nil),
		send("/v1/chat/completions", relayKey, map[string]string{mockllm.HeaderFirstByteDelay: "1"}),
	}
	if statuses[0] != 200 || statuses[2] != 401 || statuses[3] != 404 {
		t.Errorf("statuses %v", statuses)
	}
	// /metrics answers on its own address, and not on the relay's port.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(metrics), "relay_") {
		t.Errorf("metrics.addr: status %d, %d bytes", resp.StatusCode, len(metrics))
	}
	resp, err = http.Get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode == 200 {
		t.Errorf("/metrics still served on the relay's port with metrics.addr set")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
	rows := servicetest.Query(t, url, db, "SELECT * FROM stream_logs")
	if len(rows) != len(statuses)+1 { // the /metrics probe on the relay port is a 404 row too
		t.Errorf("%d rows for %d requests", len(rows), len(statuses)+1)
	}
	sources := map[string]string{
		"debug log": p.stderr.String(),
		"rows":      fmt.Sprint(rows),
		"/metrics":  string(metrics),
		"responses": outputs.String(),
	}
	if !strings.Contains(sources["debug log"], "level=DEBUG") {
		t.Errorf("no debug line in the log: %.500s", sources["debug log"])
	}
	found := 0
	for name, text := range sources {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				found++
				i := strings.Index(text, s)
				t.Errorf("%s contains a secret: ...%s...", name, text[max(i-80, 0):min(i+40, len(text))])
			}
		}
	}
	chaosResult{scenario: "security/secrets-in-outputs", sent: int64(len(statuses)), answered: int64(len(statuses)),
		unexpect: int64(found), stored: int64(len(rows)), spooledNA: true, droppedNA: true}.emit(t)
}

// TestChaosTLSListener: the relay's own listener with server.tls_cert and
// tls_key (a self-signed certificate made here) serves streams over TLS
// and refuses plain HTTP on the same port.
func TestChaosTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey})
	if err != nil {
		t.Fatal(err)
	}
	defer mock.Close()
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	cfg, err := Parse([]byte(testConfig(mockBase, dir, "")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Port = servicetest.FreePort(t)
	cfg.Server.TLSCert, cfg.Server.TLSKey = certFile, keyFile
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ln) }()
	defer func() {
		ctx, cancel := contextWithTimeout(20 * time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
		<-done
	}()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	base := fmt.Sprintf("https://127.0.0.1:%d", cfg.Server.Port)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header.Set(mockllm.HeaderChunks, "3")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var unexpected int64
	if resp.StatusCode != 200 || !strings.Contains(string(body), "[DONE]") || resp.TLS == nil {
		t.Errorf("over TLS: %d %q", resp.StatusCode, body)
		unexpected++
	}
	plain := rawExchange(t, fmt.Sprintf("http://127.0.0.1:%d", cfg.Server.Port), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 3*time.Second)
	if statusOf(plain) == 200 {
		t.Errorf("plain HTTP served on the TLS port")
		unexpected++
	}
	chaosResult{scenario: "security/tls-listener", sent: 2, answered: 1, expected: 1, unexpect: unexpected,
		storedNA: true, spooledNA: true, droppedNA: true}.emit(t)
}

// selfSigned writes a self-signed ECDSA certificate for 127.0.0.1 and its
// key to dir and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return selfSignedValid(t, dir, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// selfSignedValid is selfSigned with the certificate's validity.
func selfSignedValid(t *testing.T, dir string, notBefore, notAfter time.Time) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stream-relay test"},
		NotBefore: notBefore, NotAfter: notAfter,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
