package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TLSConfig is the `tls:` section: TLS on the client listener, optionally with client certificates.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`      // PEM certificate (chain) of the listener; setting it turns TLS on
	KeyFile      string `yaml:"key_file"`       // PEM private key
	ClientCAFile string `yaml:"client_ca_file"` // PEM CA bundle that client certificates must chain to
	// ClientAuth: none (default without client_ca_file), request (verify a certificate if the client
	// sends one) or require (default with client_ca_file).
	ClientAuth string `yaml:"client_auth"`
	// CertUser maps a verified client certificate's subject CN to the user of that name, so the
	// connection is authenticated without AUTH.
	CertUser   bool   `yaml:"cert_user"`
	MinVersion string `yaml:"min_version"` // "1.2" (default) or "1.3"
}

// Enabled reports whether the listener uses TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

func (t TLSConfig) clientAuth() string {
	if t.ClientAuth != "" {
		return t.ClientAuth
	}
	if t.ClientCAFile != "" {
		return "require"
	}
	return "none"
}

// BackendTLSConfig is the `backend_tls:` section, applied to rediss:// backends (standalone, Sentinel
// and Cluster).
type BackendTLSConfig struct {
	CAFile             string `yaml:"ca_file"`              // PEM CA bundle to verify the backend (default: system roots)
	CertFile           string `yaml:"cert_file"`            // client certificate for Redis's tls-auth-clients
	KeyFile            string `yaml:"key_file"`             // its key
	ServerName         string `yaml:"server_name"`          // name to verify instead of the URL's host
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"` // do not verify the backend's certificate (testing only)
}

// Set reports whether any backend TLS option is given.
func (b BackendTLSConfig) Set() bool { return b != BackendTLSConfig{} }

// resolve makes a relative path relative to the config file's directory.
func resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) || dir == "" {
		return path
	}
	return filepath.Join(dir, path)
}

// loadCertPool reads a PEM bundle.
func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

func tlsVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("must be 1.2 or 1.3, got %q", v)
}

// serverTLS builds the listener's tls.Config, reporting each problem with its YAML path.
func (t TLSConfig) serverTLS(dir string) (*tls.Config, error) {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("tls.%s: "+format, append([]any{path}, args...)...))
	}
	conf := &tls.Config{}
	switch {
	case t.CertFile == "":
		bad("cert_file", "missing (the other tls options need it)")
	case t.KeyFile == "":
		bad("key_file", "missing (cert_file is set)")
	default:
		cert, err := tls.LoadX509KeyPair(resolve(dir, t.CertFile), resolve(dir, t.KeyFile))
		if err != nil {
			bad("cert_file", "%v", err)
		} else {
			conf.Certificates = []tls.Certificate{cert}
		}
	}
	if v, err := tlsVersion(t.MinVersion); err != nil {
		bad("min_version", "%v", err)
	} else {
		conf.MinVersion = v
	}
	mode := t.clientAuth()
	switch mode {
	case "none":
		conf.ClientAuth = tls.NoClientCert
	case "request":
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		bad("client_auth", "must be none, request or require, got %q", t.ClientAuth)
	}
	if t.ClientCAFile != "" {
		pool, err := loadCertPool(resolve(dir, t.ClientCAFile))
		if err != nil {
			bad("client_ca_file", "%v", err)
		}
		conf.ClientCAs = pool
	} else if mode == "request" || mode == "require" {
		bad("client_ca_file", "required with client_auth: %s", mode)
	}
	if t.CertUser && mode == "none" {
		bad("cert_user", "needs client certificates (client_ca_file and client_auth request or require)")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return conf, nil
}

// isTLSBackend reports whether a backend URL uses TLS.
func isTLSBackend(rawURL string) bool {
	scheme, _, _ := strings.Cut(rawURL, "://")
	return strings.HasPrefix(strings.ToLower(scheme), "rediss")
}

// apply merges the options into the tls.Config that go-redis built from a rediss:// URL.
func (b BackendTLSConfig) apply(conf *tls.Config, dir string) error {
	var errs []error
	if b.CAFile != "" {
		pool, err := loadCertPool(resolve(dir, b.CAFile))
		if err != nil {
			errs = append(errs, fmt.Errorf("backend_tls.ca_file: %w", err))
		}
		conf.RootCAs = pool
	}
	switch {
	case b.CertFile != "" && b.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(resolve(dir, b.CertFile), resolve(dir, b.KeyFile))
		if err != nil {
			errs = append(errs, fmt.Errorf("backend_tls.cert_file: %w", err))
		} else {
			conf.Certificates = []tls.Certificate{cert}
		}
	case b.CertFile != "":
		errs = append(errs, errors.New("backend_tls.key_file: missing (cert_file is set)"))
	case b.KeyFile != "":
		errs = append(errs, errors.New("backend_tls.cert_file: missing (key_file is set)"))
	}
	if b.ServerName != "" {
		conf.ServerName = b.ServerName
	}
	if b.InsecureSkipVerify {
		conf.InsecureSkipVerify = true
	}
	if conf.MinVersion < tls.VersionTLS12 {
		conf.MinVersion = tls.VersionTLS12
	}
	return errors.Join(errs...)
}
