#include "net/pki.h"

#include <arpa/inet.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#include <cstring>
#include <ctime>

#include "base/crypto.h"

namespace berth::net::pki {

namespace {

int Random(void*, unsigned char* out, size_t len) { return crypto::RandomBytes(out, len) ? 0 : -1; }

std::string MbedError(int code) {
  char buf[160];
  mbedtls_strerror(code, buf, sizeof buf);
  return buf;
}

const unsigned char* Bytes(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.c_str()); }

// RAII holders for the mbedTLS structures used here.
struct Pk {
  Pk() { mbedtls_pk_init(&v); }
  ~Pk() { mbedtls_pk_free(&v); }
  mbedtls_pk_context v;
};
struct Crt {
  Crt() { mbedtls_x509_crt_init(&v); }
  ~Crt() { mbedtls_x509_crt_free(&v); }
  mbedtls_x509_crt v;
};
struct CrtWrite {
  CrtWrite() { mbedtls_x509write_crt_init(&v); }
  ~CrtWrite() { mbedtls_x509write_crt_free(&v); }
  mbedtls_x509write_cert v;
};
struct Mpi {
  Mpi() { mbedtls_mpi_init(&v); }
  ~Mpi() { mbedtls_mpi_free(&v); }
  mbedtls_mpi v;
};

Status ParsePrivate(Pk* pk, const std::string& pem, const char* what) {
  int r = mbedtls_pk_parse_key(&pk->v, Bytes(pem), pem.size() + 1, nullptr, 0);
  if (r != 0) return Error::Invalid(std::string(what) + ": " + MbedError(r));
  return {};
}

// A key given as a private or a public key.
Status ParseAnyKey(Pk* pk, const std::string& pem) {
  if (mbedtls_pk_parse_public_key(&pk->v, Bytes(pem), pem.size() + 1) == 0) return {};
  mbedtls_pk_free(&pk->v);
  mbedtls_pk_init(&pk->v);
  return ParsePrivate(pk, pem, "subject key");
}

std::string TimeText(int64_t unix_secs) {
  time_t t = static_cast<time_t>(unix_secs);
  tm v{};
  gmtime_r(&t, &v);
  char buf[20];
  strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &v);
  return buf;
}

int64_t UnixOf(const mbedtls_x509_time& t) {
  tm v{};
  v.tm_year = t.year - 1900;
  v.tm_mon = t.mon - 1;
  v.tm_mday = t.day;
  v.tm_hour = t.hour;
  v.tm_min = t.min;
  v.tm_sec = t.sec;
  return static_cast<int64_t>(timegm(&v));
}

// A name mbedTLS's "CN=..." parser takes as one value.
Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name.find_first_of(",=+\\\"<>;") != std::string::npos) {
    return Error::Invalid("certificate name '" + name + "' is empty, longer than 64 or has one of ,=+\\\"<>;");
  }
  return {};
}

// The DER of a subjectAltName extension value.
Result<std::string> SanDer(const CertSpec& spec) {
  unsigned char buf[4096];
  unsigned char* p = buf + sizeof buf;
  size_t len = 0;
  auto put = [&](const unsigned char* data, size_t n, unsigned char tag) -> int {
    int r1 = mbedtls_asn1_write_raw_buffer(&p, buf, data, n);
    if (r1 < 0) return r1;
    int r2 = mbedtls_asn1_write_len(&p, buf, n);
    if (r2 < 0) return r2;
    int r3 = mbedtls_asn1_write_tag(&p, buf, tag);
    if (r3 < 0) return r3;
    len += static_cast<size_t>(r1 + r2 + r3);
    return 0;
  };
  for (auto it = spec.addresses.rbegin(); it != spec.addresses.rend(); ++it) {
    unsigned char ip[16];
    size_t n = 0;
    if (inet_pton(AF_INET, it->c_str(), ip) == 1) {
      n = 4;
    } else if (inet_pton(AF_INET6, it->c_str(), ip) == 1) {
      n = 16;
    } else {
      return Error::Invalid("'" + *it + "' is not an IPv4 or IPv6 address");
    }
    if (put(ip, n, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) != 0) return Error::Invalid("too many certificate names");
  }
  for (auto it = spec.dns_names.rbegin(); it != spec.dns_names.rend(); ++it) {
    if (it->empty() || it->size() > 253) return Error::Invalid("DNS name '" + *it + "' is empty or too long");
    if (put(Bytes(*it), it->size(), MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2) != 0) {
      return Error::Invalid("too many certificate names");
    }
  }
  int r1 = mbedtls_asn1_write_len(&p, buf, len);
  int r2 = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
  if (r1 < 0 || r2 < 0) return Error::Invalid("too many certificate names");
  return std::string(reinterpret_cast<char*>(p), len + static_cast<size_t>(r1 + r2));
}

// The DER of an extendedKeyUsage extension value with one purpose.
std::string EkuDer(bool server) {
  unsigned char buf[64];
  unsigned char* p = buf + sizeof buf;
  int n = server ? mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH))
                 : mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH));
  size_t len = static_cast<size_t>(n);
  len += static_cast<size_t>(mbedtls_asn1_write_len(&p, buf, len));
  len += static_cast<size_t>(mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  return std::string(reinterpret_cast<char*>(p), len);
}

Result<std::string> Write(mbedtls_pk_context* subject, mbedtls_pk_context* issuer, const std::string& issuer_name,
                          const CertSpec& spec) {
  if (Status s = CheckName(spec.common_name); !s) return s.take_error();
  if (spec.not_after_unix <= spec.not_before_unix) return Error::Invalid("certificate validity ends before it begins");
  CrtWrite w;
  mbedtls_x509write_crt_set_version(&w.v, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&w.v, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&w.v, subject);
  mbedtls_x509write_crt_set_issuer_key(&w.v, issuer);
  std::string subject_name = "CN=" + spec.common_name;
  int r = mbedtls_x509write_crt_set_subject_name(&w.v, subject_name.c_str());
  if (r == 0) r = mbedtls_x509write_crt_set_issuer_name(&w.v, issuer_name.c_str());
  if (r != 0) return Error::Invalid("certificate names: " + MbedError(r));
  unsigned char serial[16];
  if (Status s = crypto::RandomBytes(serial, sizeof serial); !s) return s.take_error();
  serial[0] &= 0x7f;
  serial[0] |= 0x01;  // positive, and 16 bytes long
  Mpi mpi;
  mbedtls_mpi_read_binary(&mpi.v, serial, sizeof serial);
  if ((r = mbedtls_x509write_crt_set_serial(&w.v, &mpi.v)) != 0) return Error::Internal("serial: " + MbedError(r));
  std::string from = TimeText(spec.not_before_unix), to = TimeText(spec.not_after_unix);
  if ((r = mbedtls_x509write_crt_set_validity(&w.v, from.c_str(), to.c_str())) != 0) {
    return Error::Invalid("validity: " + MbedError(r));
  }
  bool ca = spec.use == CertSpec::Use::kCa;
  if ((r = mbedtls_x509write_crt_set_basic_constraints(&w.v, ca ? 1 : 0, ca ? 0 : -1)) != 0 ||
      (r = mbedtls_x509write_crt_set_subject_key_identifier(&w.v)) != 0 ||
      (r = mbedtls_x509write_crt_set_authority_key_identifier(&w.v)) != 0 ||
      (r = mbedtls_x509write_crt_set_key_usage(&w.v, ca ? MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN
                                                        : MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0) {
    return Error::Internal("certificate extensions: " + MbedError(r));
  }
  if (!ca) {
    std::string eku = EkuDer(spec.use == CertSpec::Use::kServer);
    r = mbedtls_x509write_crt_set_extension(&w.v, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                            MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, Bytes(eku),
                                            eku.size());
    if (r != 0) return Error::Internal("extended key usage: " + MbedError(r));
  }
  if (!spec.dns_names.empty() || !spec.addresses.empty()) {
    Result<std::string> san = SanDer(spec);
    if (!san) return san.take_error();
    r = mbedtls_x509write_crt_set_extension(&w.v, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                            MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, Bytes(san.value()),
                                            san->size());
    if (r != 0) return Error::Internal("subject alternative names: " + MbedError(r));
  }
  std::string out(8192, '\0');
  r = mbedtls_x509write_crt_pem(&w.v, reinterpret_cast<unsigned char*>(out.data()), out.size(), Random, nullptr);
  if (r != 0) return Error::Internal("writing the certificate: " + MbedError(r));
  out.resize(strlen(out.c_str()));
  return out;
}

}  // namespace

Result<std::string> NewKey() {
  Pk pk;
  int r = mbedtls_pk_setup(&pk.v, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (r == 0) r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk.v), Random, nullptr);
  if (r != 0) return Error::Internal("making a P-256 key: " + MbedError(r));
  std::string out(1024, '\0');
  r = mbedtls_pk_write_key_pem(&pk.v, reinterpret_cast<unsigned char*>(out.data()), out.size());
  if (r != 0) return Error::Internal("writing the key: " + MbedError(r));
  out.resize(strlen(out.c_str()));
  return out;
}

Result<std::string> SelfSign(const std::string& key_pem, const CertSpec& spec) {
  Pk pk;
  if (Status s = ParsePrivate(&pk, key_pem, "CA key"); !s) return s.take_error();
  return Write(&pk.v, &pk.v, "CN=" + spec.common_name, spec);
}

Result<std::string> Issue(const std::string& ca_cert_pem, const std::string& ca_key_pem,
                          const std::string& subject_key_pem, const CertSpec& spec) {
  Pk ca_key, subject;
  if (Status s = ParsePrivate(&ca_key, ca_key_pem, "CA key"); !s) return s.take_error();
  if (Status s = ParseAnyKey(&subject, subject_key_pem); !s) return s.take_error();
  Crt ca;
  int r = mbedtls_x509_crt_parse(&ca.v, Bytes(ca_cert_pem), ca_cert_pem.size() + 1);
  if (r != 0) return Error::Invalid("CA certificate: " + MbedError(r));
  char issuer[256];
  if (mbedtls_x509_dn_gets(issuer, sizeof issuer, &ca.v.subject) < 0) return Error::Invalid("CA subject too long");
  return Write(&subject.v, &ca_key.v, issuer, spec);
}

Result<std::string> NewRequest(const std::string& key_pem, const std::string& common_name) {
  if (Status s = CheckName(common_name); !s) return s.take_error();
  Pk pk;
  if (Status s = ParsePrivate(&pk, key_pem, "key"); !s) return s.take_error();
  mbedtls_x509write_csr w;
  mbedtls_x509write_csr_init(&w);
  mbedtls_x509write_csr_set_md_alg(&w, MBEDTLS_MD_SHA256);
  mbedtls_x509write_csr_set_key(&w, &pk.v);
  std::string name = "CN=" + common_name;
  int r = mbedtls_x509write_csr_set_subject_name(&w, name.c_str());
  std::string out(4096, '\0');
  if (r == 0) {
    r = mbedtls_x509write_csr_pem(&w, reinterpret_cast<unsigned char*>(out.data()), out.size(), Random, nullptr);
  }
  mbedtls_x509write_csr_free(&w);
  if (r != 0) return Error::Internal("writing the signing request: " + MbedError(r));
  out.resize(strlen(out.c_str()));
  return out;
}

Result<std::string> PublicKeyPin(const std::string& key_pem) {
  Pk pk;
  if (Status s = ParseAnyKey(&pk, key_pem); !s) return s.take_error();
  unsigned char buf[1024];
  // mbedtls writes the DER at the end of the buffer and returns its length.
  int n = mbedtls_pk_write_pubkey_der(&pk.v, buf, sizeof buf);
  if (n <= 0) return Error::Internal("writing the public key: " + MbedError(n));
  std::string_view der(reinterpret_cast<const char*>(buf + sizeof buf - n), static_cast<size_t>(n));
  crypto::Sha256Digest d = crypto::Sha256(der);
  return "sha256//" + crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

bool PrivateKeyValid(const std::string& key_pem) {
  Pk pk;
  return !key_pem.empty() && ParsePrivate(&pk, key_pem, "key");
}

Result<std::string> RequestPublicKey(const std::string& csr_pem) {
  mbedtls_x509_csr csr;
  mbedtls_x509_csr_init(&csr);
  struct Free {
    mbedtls_x509_csr* c;
    ~Free() { mbedtls_x509_csr_free(c); }
  } free_csr{&csr};
  int r = mbedtls_x509_csr_parse(&csr, Bytes(csr_pem), csr_pem.size() + 1);
  if (r != 0) return Error::Invalid("signing request: " + MbedError(r));
  if (!mbedtls_pk_can_do(&csr.pk, MBEDTLS_PK_ECKEY)) return Error::Invalid("signing request: the key is not ECDSA");
  const mbedtls_md_info_t* md = mbedtls_md_info_from_type(csr.sig_md);
  if (!md) return Error::Invalid("signing request: unknown signature hash");
  unsigned char hash[MBEDTLS_MD_MAX_SIZE];
  if (mbedtls_md(md, csr.cri.p, csr.cri.len, hash) != 0 ||
      mbedtls_pk_verify(&csr.pk, csr.sig_md, hash, mbedtls_md_get_size(md), csr.sig.p, csr.sig.len) != 0) {
    return Error::Invalid("signing request: its signature does not hold");
  }
  std::string out(1024, '\0');
  r = mbedtls_pk_write_pubkey_pem(&csr.pk, reinterpret_cast<unsigned char*>(out.data()), out.size());
  if (r != 0) return Error::Internal("writing the public key: " + MbedError(r));
  out.resize(strlen(out.c_str()));
  return out;
}

Result<CertInfo> Inspect(const std::string& pem) {
  Crt crt;
  int r = mbedtls_x509_crt_parse(&crt.v, Bytes(pem), pem.size() + 1);
  if (r != 0) return Error::Invalid("certificate: " + MbedError(r));
  CertInfo info;
  for (const mbedtls_x509_name* n = &crt.v.subject; n; n = n->next) {
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
      info.common_name.assign(reinterpret_cast<const char*>(n->val.p), n->val.len);
    }
  }
  info.fingerprint =
      crypto::Hex(crypto::Sha256(std::string_view(reinterpret_cast<const char*>(crt.v.raw.p), crt.v.raw.len)));
  info.not_before_unix = UnixOf(crt.v.valid_from);
  info.not_after_unix = UnixOf(crt.v.valid_to);
  for (const mbedtls_x509_sequence* s = &crt.v.subject_alt_names; s && s->buf.p; s = s->next) {
    if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2)) {
      info.dns_names.emplace_back(reinterpret_cast<const char*>(s->buf.p), s->buf.len);
    }
  }
  info.serial = crypto::Hex(crt.v.serial.p, crt.v.serial.len);
  return info;
}

bool SignedBy(const std::string& cert_pem, const std::string& ca_pem) {
  Crt crt, ca;
  if (mbedtls_x509_crt_parse(&crt.v, Bytes(cert_pem), cert_pem.size() + 1) != 0) return false;
  if (mbedtls_x509_crt_parse(&ca.v, Bytes(ca_pem), ca_pem.size() + 1) != 0) return false;
  uint32_t flags = 0;
  return mbedtls_x509_crt_verify(&crt.v, &ca.v, nullptr, nullptr, &flags, nullptr, nullptr) == 0;
}

std::string FirstCertificate(const std::string& pem) {
  const char kEnd[] = "-----END CERTIFICATE-----";
  size_t begin = pem.find("-----BEGIN CERTIFICATE-----");
  if (begin == std::string::npos) return {};
  size_t end = pem.find(kEnd, begin);
  if (end == std::string::npos) return {};
  return pem.substr(begin, end + sizeof kEnd - 1 - begin) + "\n";
}

}  // namespace berth::net::pki
