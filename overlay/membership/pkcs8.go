package membership

import (
	"bytes"
	"crypto/ed25519"
	"errors"
)

// pkcs8Ed25519Prefix is the DER of an Ed25519 private key in PKCS #8
// (RFC 8410, section 7) up to the 32-byte seed: SEQUENCE { INTEGER 0,
// SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32 bytes) } }.
// It is the one form crypto/x509 and OpenSSL write for such a key.
//
// The store encodes the root key itself rather than with crypto/x509,
// whose PKCS #8 parser handles RSA and the NIST curves too: linking it
// adds about 0.5 MB to a router's cloudboxd.
var pkcs8Ed25519Prefix = []byte{
	0x30, 0x2e, // SEQUENCE, 46 bytes
	0x02, 0x01, 0x00, // INTEGER 0 (version v1)
	0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, // SEQUENCE { OID id-Ed25519 }
	0x04, 0x22, 0x04, 0x20, // OCTET STRING { OCTET STRING, 32 bytes }
}

// marshalPKCS8 returns the PKCS #8 DER of key.
func marshalPKCS8(key ed25519.PrivateKey) []byte {
	return append(bytes.Clone(pkcs8Ed25519Prefix), key.Seed()...)
}

// parsePKCS8 returns the Ed25519 key in der, which must be in the form
// marshalPKCS8 writes (no attributes, no public key).
func parsePKCS8(der []byte) (ed25519.PrivateKey, error) {
	if len(der) != len(pkcs8Ed25519Prefix)+ed25519.SeedSize || !bytes.HasPrefix(der, pkcs8Ed25519Prefix) {
		return nil, errors.New("not an Ed25519 private key in PKCS #8 (RFC 8410) without attributes")
	}
	return ed25519.NewKeyFromSeed(der[len(pkcs8Ed25519Prefix):]), nil
}
