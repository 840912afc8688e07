package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA modulus accepted for RS256.
const minRSABits = 2048

// maxPEMFileSize caps what LoadPublicKey reads.
const maxPEMFileSize = 64 << 10

// LoadPublicKey reads the PEM file at path and returns the first public key
// in it, for Options.PublicKey: a "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
// (PKCS #1) or "CERTIFICATE" block. The key must be RSA of at least 2048
// bits (for RS256) or ECDSA on P-256 (for ES256). A private key in the file
// is an error, so it is never mistaken for the public one. Errors name the
// path, never the file's contents.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read public key %s: %w", path, err)
	}
	if len(data) > maxPEMFileSize {
		return nil, fmt.Errorf("public key %s is larger than %d bytes; give a PEM file with one public key", path, maxPEMFileSize)
	}
	key, err := ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return key, nil
}

// ParsePublicKeyPEM is LoadPublicKey for PEM data already in memory.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("found a %s block: give the proxy only the public key (e.g. openssl pkey -pubout)", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s block: %w", block.Type, err)
		}
		if _, err := algForKey(key); err != nil {
			return nil, err
		}
		return key, nil
	}
}

// algForKey returns the JWT algorithm key verifies: RS256 for an RSA public
// key of at least 2048 bits, ES256 for an ECDSA public key on P-256. Any
// other key is an error.
func algForKey(key any) (string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key is too small; need at least %d bits", minRSABits)
		}
		return jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("ECDSA key is not on P-256; only ES256 is supported")
		}
		return jwt.SigningMethodES256.Alg(), nil
	}
	return "", fmt.Errorf("unsupported key type %T; use an RSA (RS256) or ECDSA P-256 (ES256) public key", key)
}

// keySuitsAlg checks that key is the kind of public key alg is verified
// with, so a token can never pick how its key is used.
func keySuitsAlg(key any, alg string) error {
	want, err := algForKey(key)
	if err != nil {
		return err
	}
	if want != alg {
		return fmt.Errorf("token alg %s does not match the %s key", alg, want)
	}
	return nil
}
