// Keys and X.509 certificates by mbedTLS, for the cluster CA: ECDSA P-256 keys, a
// self-signed CA, server certificates whose names cover the server's host names and
// addresses, and node certificates issued from a node's signing request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace berth::net::pki {

// A fresh ECDSA P-256 private key, PEM.
Result<std::string> NewKey();

struct CertSpec {
  enum class Use { kCa, kServer, kClient };
  Use use = Use::kServer;
  std::string common_name;
  std::vector<std::string> dns_names;  // subjectAltName dNSName
  std::vector<std::string> addresses;  // subjectAltName iPAddress (v4 or v6 text)
  int64_t not_before_unix = 0;
  int64_t not_after_unix = 0;
};

// A self-signed CA certificate for `key_pem`, PEM.
Result<std::string> SelfSign(const std::string& key_pem, const CertSpec& spec);
// A certificate for the public key in `subject_key_pem` (a private or public key,
// PEM) signed by the CA, PEM.
Result<std::string> Issue(const std::string& ca_cert_pem, const std::string& ca_key_pem,
                          const std::string& subject_key_pem, const CertSpec& spec);

// The pin of the key in `key_pem` (a private or public key, PEM) as curl's
// --pinnedpubkey takes it: "sha256//" and the base64 SHA-256 of the
// SubjectPublicKeyInfo DER.
Result<std::string> PublicKeyPin(const std::string& key_pem);
// Whether `key_pem` holds a private key mbedTLS reads.
bool PrivateKeyValid(const std::string& key_pem);

// A certificate signing request for `key_pem` naming `common_name`, PEM.
Result<std::string> NewRequest(const std::string& key_pem, const std::string& common_name);
// The public key (PEM) of a signing request whose signature holds.
Result<std::string> RequestPublicKey(const std::string& csr_pem);

struct CertInfo {
  std::string common_name;
  std::string fingerprint;  // hex SHA-256 of the DER
  int64_t not_before_unix = 0;
  int64_t not_after_unix = 0;
  std::vector<std::string> dns_names;
  std::string serial;  // hex
};
// Reads the first certificate of `pem`.
Result<CertInfo> Inspect(const std::string& pem);
// True if `cert_pem`'s first certificate was signed by the CA in `ca_pem`.
bool SignedBy(const std::string& cert_pem, const std::string& ca_pem);
// The first certificate of a PEM bundle, PEM.
std::string FirstCertificate(const std::string& pem);

}  // namespace berth::net::pki
