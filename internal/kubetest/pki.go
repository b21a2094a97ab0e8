package kubetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's certificate authority and the files the components
// read: the CA, the API server's serving pair, the admin's client pair
// (group system:masters) and the service-account signing pair.
type pki struct {
	caCert *x509.Certificate
	caKey  crypto.Signer
	caPEM  []byte

	dir                       string
	caFile                    string
	caKeyFile                 string
	servingCert, servingKey   string
	adminCert, adminKey       string
	adminCertPEM, adminKeyPEM []byte
	saPub, saKey              string
}

// certValidity covers any test run; the certificates live in a temp dir.
const certValidity = 24 * time.Hour

func newPKI(dir string) (*pki, error) {
	p := &pki{dir: dir}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest-ca"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("kubetest: CA certificate: %w", err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	p.caKey = caKey
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p.caFile = filepath.Join(dir, "ca.crt")
	p.caKeyFile = filepath.Join(dir, "ca.key")
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	if err := writeFiles(map[string][]byte{p.caFile: p.caPEM, p.caKeyFile: caKeyPEM}); err != nil {
		return nil, err
	}

	// The API server answers on 127.0.0.1, and in-cluster clients reach it
	// as the kubernetes service (the first address of the service range).
	certPEM, kPEM, err := p.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, err
	}
	p.servingCert, p.servingKey = filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key")
	if err := writeFiles(map[string][]byte{p.servingCert: certPEM, p.servingKey: kPEM}); err != nil {
		return nil, err
	}

	if p.adminCertPEM, p.adminKeyPEM, err = p.ClientCert("kubetest-admin", "system:masters"); err != nil {
		return nil, err
	}
	p.adminCert, p.adminKey = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := writeFiles(map[string][]byte{p.adminCert: p.adminCertPEM, p.adminKey: p.adminKeyPEM}); err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	p.saKey, p.saPub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := writeFiles(map[string][]byte{
		p.saKey: saKeyPEM,
		p.saPub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// ClientCert issues a client certificate for user in groups (the API server
// takes the CN as the user name and each O as a group), PEM-encoded.
func (p *pki) ClientCert(user string, groups ...string) (certPEM, keyPEM []byte, err error) {
	return p.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// issue signs tmpl, with a fresh key, by the CA.
func (p *pki) issue(tmpl *x509.Certificate) (certPEM, kPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Minute)
	tmpl.NotAfter = now.Add(certValidity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("kubetest: certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	if kPEM, err = keyPEM(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kPEM, nil
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func writeFiles(files map[string][]byte) error {
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}
	return nil
}
