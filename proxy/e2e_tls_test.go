package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// testCA is a throwaway certificate authority created at run time; nothing is committed.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string // PEM of the CA certificate
	dir  string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), dir: t.TempDir()}
	ca.pool.AddCert(cert)
	ca.file = filepath.Join(ca.dir, name+"-ca.pem")
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

var serial int64 = 100

// issue signs a leaf certificate for cn (server: valid for 127.0.0.1 and localhost) and returns the
// paths of its certificate and key files, and the pair for a Go client.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, cn+"-"+strconv.FormatInt(serial, 10)+".pem")
	keyFile = filepath.Join(ca.dir, cn+"-"+strconv.FormatInt(serial, 10)+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// startTLS starts qgate with TLS (server certificate from ca) and the auth tests' users.
func startTLS(t *testing.T, ca *testCA, tc proxy.TLSConfig) *authEnv {
	t.Helper()
	cert, key, _ := ca.issue(t, "qgate-server", true)
	tc.CertFile, tc.KeyFile = cert, key
	return startAuth(t, func(c *proxy.Config) { c.TLS = tc })
}

func tlsClient(t *testing.T, e *authEnv, ca *testCA, proto int, user, pw string, certs ...tls.Certificate) *redis.Client {
	t.Helper()
	return e.q.Client(t, func(o *redis.Options) {
		o.Protocol, o.Username, o.Password = proto, user, pw
		o.MaxRetries, o.DialerRetries = -1, 1
		o.TLSConfig = &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", Certificates: certs, MinVersion: tls.VersionTLS12}
	})
}

// TestTLS_ListenerWithoutClientCerts: TLS clients log in as usual; plain-text clients and TLS 1.1
// clients get nowhere.
func TestTLS_ListenerWithoutClientCerts(t *testing.T) {
	ca := newTestCA(t, "qgate-test")
	e := startTLS(t, ca, proxy.TLSConfig{})
	ctx := context.Background()
	authProtos(t, func(t *testing.T, proto int) {
		c := tlsClient(t, e, ca, proto, "producer", pwProducer)
		if err := c.RPush(ctx, "email_tls", "x").Err(); err != nil {
			t.Fatalf("RPUSH over TLS: %v", err)
		}
		if got := e2eAuthErr(tlsClient(t, e, ca, proto, "producer", pwWrong).Ping(ctx).Err()); !strings.HasPrefix(got, "WRONGPASS") {
			t.Fatalf("wrong password over TLS: %q", got)
		}
	})
	plain := e.client(t, 2, "producer", pwProducer)
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("a plain-text client was served by the TLS listener")
	}
	old, err := tls.Dial("tcp", e.q.Addr, &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS11, ServerName: "127.0.0.1"})
	if err == nil {
		old.Close()
		t.Fatal("TLS 1.1 accepted (min_version 1.2)")
	}
}

// TestTLS_RequireClientCert: without a certificate, or with one from another CA, the handshake fails;
// with one, the client still logs in with AUTH (cert_user is off).
func TestTLS_RequireClientCert(t *testing.T) {
	ca := newTestCA(t, "qgate-test")
	other := newTestCA(t, "other")
	e := startTLS(t, ca, proxy.TLSConfig{ClientCAFile: ca.file, ClientAuth: "require"})
	ctx := context.Background()
	_, _, good := ca.issue(t, "worker", false)
	_, _, foreign := other.issue(t, "worker", false)
	if err := tlsClient(t, e, ca, 3, "producer", pwProducer).Ping(ctx).Err(); err == nil {
		t.Fatal("require: a client without a certificate was served")
	}
	if err := tlsClient(t, e, ca, 3, "producer", pwProducer, foreign).Ping(ctx).Err(); err == nil {
		t.Fatal("require: a certificate from another CA was accepted")
	}
	c := tlsClient(t, e, ca, 3, "producer", pwProducer, good)
	if err := c.RPush(ctx, "email_m", "x").Err(); err != nil {
		t.Fatalf("require with a certificate: %v", err)
	}
	noAuth := tlsClient(t, e, ca, 3, "", "", good)
	if got := e2eAuthErr(noAuth.LLen(ctx, "email_m").Err()); got != "NOAUTH Authentication required." {
		t.Fatalf("certificate without cert_user and without AUTH: %q", got)
	}
}

// TestTLS_CertUser: with cert_user, a verified certificate's CN is the connection's user (no AUTH);
// its rights apply; RESET keeps it; a CN naming no user must AUTH; request mode serves clients
// without certificates, which log in with AUTH.
func TestTLS_CertUser(t *testing.T) {
	ca := newTestCA(t, "qgate-test")
	e := startTLS(t, ca, proxy.TLSConfig{ClientCAFile: ca.file, ClientAuth: "request", CertUser: true})
	ctx := context.Background()
	_, _, worker := ca.issue(t, "worker", false)
	_, _, stranger := ca.issue(t, "stranger", false)
	authProtos(t, func(t *testing.T, proto int) {
		w := tlsClient(t, e, ca, proto, "", "", worker)
		if err := w.LLen(ctx, "email_c").Err(); err != nil {
			t.Fatalf("LLEN as the certificate's user: %v", err)
		}
		if got := e2eAuthErr(w.RPush(ctx, "email_c", "x").Err()); got != "NOPERM user 'worker' has no 'push' right on queue 'email_c'" {
			t.Fatalf("RPUSH as worker by certificate: %q", got)
		}
		if info := w.ClientInfo(ctx).Val(); info == nil || info.User != "worker" {
			t.Fatalf("CLIENT INFO = %+v", info)
		}
		s := tlsClient(t, e, ca, proto, "", "", stranger)
		if got := e2eAuthErr(s.LLen(ctx, "email_c").Err()); got != "NOAUTH Authentication required." {
			t.Fatalf("certificate naming no user: %q", got)
		}
		n := tlsClient(t, e, ca, proto, "producer", pwProducer) // request mode: no certificate, AUTH
		if err := n.RPush(ctx, "email_c", "x").Err(); err != nil {
			t.Fatalf("no certificate, AUTH: %v", err)
		}
	})
	// RESET keeps the certificate's user.
	conn, err := tls.Dial("tcp", e.q.Addr, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{worker}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("RESET\r\nLLEN email_none\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := readAtLeast(conn, buf, len("+RESET\r\n:0\r\n"))
	if got := string(buf[:n]); got != "+RESET\r\n:0\r\n" {
		t.Fatalf("RESET then LLEN by certificate: %q", got)
	}
}

func readAtLeast(c net.Conn, buf []byte, n int) (int, error) {
	got := 0
	for got < n {
		m, err := c.Read(buf[got:])
		got += m
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// TestTLS_BlockedClientDisconnect: over TLS, a blocked BLPOP client that goes away is noticed at
// once (read deadlines and the disconnect probe work on tls.Conn), and a later push stays in Redis.
func TestTLS_BlockedClientDisconnect(t *testing.T) {
	ca := newTestCA(t, "qgate-test")
	e := startTLS(t, ca, proxy.TLSConfig{})
	ctx := context.Background()
	admin := tlsClient(t, e, ca, 3, "admin", pwAdmin)
	conn, err := tls.Dial("tcp", e.q.Addr, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("AUTH worker " + pwWorker + "\r\nBLPOP email_block 0\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := readAtLeast(conn, buf, 5); err != nil || string(buf) != "+OK\r\n" {
		t.Fatalf("AUTH: %q %v", buf, err)
	}
	blocked := func() string { return e2eInfoValue(admin.Info(ctx, "clients").Val(), "blocked_clients") }
	e2eEventually(t, "one blocked client", func() bool { return blocked() == "1" })
	_ = conn.Close() // close_notify, then FIN
	e2eEventually(t, "no blocked client", func() bool { return blocked() == "0" })
	if err := tlsClient(t, e, ca, 3, "producer", pwProducer).RPush(ctx, "email_block", "kept").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := e.redis.Client(t).LRange(ctx, "email_block", 0, -1).Val(); len(got) != 1 {
		t.Fatalf("email_block = %q, want the item still queued", got)
	}
}

// TestTLS_Backend: qgate reaches a redis-server over TLS (rediss://) with backend_tls: the CA, and a
// client certificate because the server requires one (tls-auth-clients yes).
func TestTLS_Backend(t *testing.T) {
	ca := newTestCA(t, "redis-test")
	srvCert, srvKey, _ := ca.issue(t, "redis-server", true)
	cliCert, cliKey, _ := ca.issue(t, "qgate-client", false)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r, err := proxytest.LaunchRedis(t.TempDir(), "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", srvCert,
		"--tls-key-file", srvKey, "--tls-ca-cert-file", ca.file, "--tls-auth-clients", "yes")
	if err != nil {
		if strings.Contains(err.Error(), "tls") || strings.Contains(err.Error(), "TLS") {
			t.Skipf("redis-server without TLS support: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	url := "rediss://127.0.0.1:" + strconv.Itoa(tlsPort)
	cfg := proxy.DefaultConfig()
	cfg.Backend = url
	cfg.BackendTLS = proxy.BackendTLSConfig{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey}
	q := proxytest.StartQgate(t, cfg)
	ctx := context.Background()
	c := q.Client(t)
	if err := c.RPush(ctx, "tlsq", "over-tls").Err(); err != nil {
		t.Fatalf("RPUSH through a TLS backend: %v", err)
	}
	if got := r.Client(t).LLen(ctx, "tlsq").Val(); got != 1 {
		t.Fatalf("LLEN on the backend = %d", got)
	}
	if got, err := c.BLPop(ctx, time.Second, "tlsq").Result(); err != nil || got[1] != "over-tls" {
		t.Fatalf("BLPOP through a TLS backend = %q, %v", got, err)
	}
	// Without the CA the backend's certificate is not trusted.
	bad := proxy.DefaultConfig()
	bad.Backend = url
	bad.BackendTLS = proxy.BackendTLSConfig{CertFile: cliCert, KeyFile: cliKey}
	if _, err := proxytest.LaunchQgate(bad); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted backend certificate: %v", err)
	}
	// backend_tls needs rediss://.
	plain := proxy.DefaultConfig()
	plain.Backend = r.URL()
	plain.BackendTLS = proxy.BackendTLSConfig{CAFile: ca.file}
	if err := plain.Validate(); err == nil || !strings.Contains(err.Error(), "backend_tls: needs a rediss://") {
		t.Fatalf("backend_tls with redis://: %v", err)
	}
}

// TestTLS_HTTPListenerReusesCertificates: with tls: set, the HTTP listener serves HTTPS with the same
// certificate (README "Operations"), and a plain-HTTP request gets no page.
func TestTLS_HTTPListenerReusesCertificates(t *testing.T) {
	ca := newTestCA(t, "qgate-test")
	cert, key, _ := ca.issue(t, "qgate-server", true)
	e := startAuth(t, func(c *proxy.Config) {
		c.TLS = proxy.TLSConfig{CertFile: cert, KeyFile: key}
		c.HTTP = "127.0.0.1:0"
	})
	addr := e.q.Server.HTTPAddr()
	if addr == nil {
		t.Fatal("HTTP listener not started")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	}}
	resp, err := hc.Get("https://" + addr.String() + "/healthz")
	if err != nil {
		t.Fatalf("GET https /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("GET https /healthz = %d %q, want %d", got, body, want)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != "qgate-server" {
		t.Fatalf("HTTPS listener did not present qgate's tls: certificate")
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + addr.String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served /healthz on the TLS listener")
		}
	}
}
