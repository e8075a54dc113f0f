#include "server/cluster_ca.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "base/files.h"
#include "base/log.h"
#include "net/pki.h"

namespace berth::server {

namespace {

constexpr int64_t kCaLifetimeS = 10 * 365 * 86400;
// Certificates start a little back, for clocks a little behind: an hour, or a
// tenth of a short life.
int64_t ClockSkew(int64_t lifetime_s) { return std::min<int64_t>(3600, lifetime_s / 10); }

std::string ReadAll(const std::string& path) {
  std::string s = files::ReadTrimmed(path);
  return s.empty() ? s : s + "\n";
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

Result<std::unique_ptr<ClusterCa>> ClusterCa::Open(const std::string& data_dir) {
  std::unique_ptr<ClusterCa> ca(new ClusterCa());
  ca->dir_ = data_dir;
  std::string cert_path = data_dir + "/ca.crt", key_path = data_dir + "/ca.key";
  ca->ca_pem_ = ReadAll(cert_path);
  ca->ca_key_pem_ = ReadAll(key_path);
  if (ca->ca_pem_.empty() != ca->ca_key_pem_.empty()) {
    return Error::Invalid((ca->ca_pem_.empty() ? cert_path : key_path) +
                          " is missing while its pair is there: restore it from a backup (a new CA would "
                          "invalidate every token and node certificate)");
  }
  if (ca->ca_pem_.empty()) {
    Result<std::string> key = net::pki::NewKey();
    if (!key) return key.take_error();
    net::pki::CertSpec spec;
    spec.use = net::pki::CertSpec::Use::kCa;
    char host[256] = "berth";
    gethostname(host, sizeof host - 1);
    spec.common_name = "berth cluster CA";
    int64_t now = time(nullptr);
    spec.not_before_unix = now - ClockSkew(kCaLifetimeS);
    spec.not_after_unix = now + kCaLifetimeS;
    Result<std::string> cert = net::pki::SelfSign(key.value(), spec);
    if (!cert) return cert.take_error();
    // The key first: a crash between the two leaves a key and no certificate, which
    // the next start replaces (nothing was issued from it yet).
    if (Status s = files::WriteAtomically(key_path, key.value(), 0600); !s) return s.take_error();
    if (Status s = files::WriteAtomically(cert_path, cert.value(), 0600); !s) return s.take_error();
    ca->ca_pem_ = cert.value();
    ca->ca_key_pem_ = key.value();
    log::Info("tls", "created the cluster CA", {{"path", cert_path}});
  }
  Result<net::pki::CertInfo> info = net::pki::Inspect(ca->ca_pem_);
  if (!info) return Error::Invalid(cert_path + ": " + info.error().message);
  ca->fingerprint_ = info->fingerprint;
  return ca;
}

Result<bool> ClusterCa::EnsureServerCert(const std::vector<std::string>& dns_names,
                                         const std::vector<std::string>& addresses, int64_t now_unix,
                                         int64_t lifetime_s) {
  std::string cert_path = dir_ + "/server.crt", key_path = dir_ + "/server.key";
  if (server_chain_pem_.empty()) {
    server_chain_pem_ = ReadAll(cert_path);
    server_key_pem_ = ReadAll(key_path);
  }
  std::string why;
  if (server_chain_pem_.empty() || server_key_pem_.empty()) {
    why = "none yet";
  } else if (!net::pki::SignedBy(net::pki::FirstCertificate(server_chain_pem_), ca_pem_)) {
    why = "not signed by the cluster CA, or expired";
  } else {
    Result<net::pki::CertInfo> info = net::pki::Inspect(server_chain_pem_);
    if (!info) {
      why = "unreadable";
    } else if ((info->not_after_unix - now_unix) * 3 < info->not_after_unix - info->not_before_unix) {
      why = "a third of its life or less is left";
    } else {
      for (const std::string& n : dns_names) {
        if (!Contains(info->dns_names, n)) why = "it does not name " + n;
      }
      // Addresses are written as dNSName too (see below), so they are checked alike.
      for (const std::string& a : addresses) {
        if (!Contains(info->dns_names, a)) why = "it does not name " + a;
      }
    }
  }
  if (why.empty()) return false;
  // The key stays when it is sound, so a pin of it (the install line's
  // --pinnedpubkey, docs/install.md) outlives the certificate.
  Result<std::string> key =
      net::pki::PrivateKeyValid(server_key_pem_) ? Result<std::string>(server_key_pem_) : net::pki::NewKey();
  if (!key) return key.take_error();
  net::pki::CertSpec spec;
  spec.use = net::pki::CertSpec::Use::kServer;
  spec.common_name = dns_names.empty() ? std::string("berth server") : dns_names.front();
  spec.dns_names = dns_names;
  // Each address as an iPAddress name (what curl, OpenSSL and Docker check) and as
  // a dNSName (what mbedTLS 2.28 reads back), so a change of address is noticed.
  spec.addresses = addresses;
  for (const std::string& a : addresses) spec.dns_names.push_back(a);
  spec.not_before_unix = now_unix - ClockSkew(lifetime_s);
  spec.not_after_unix = now_unix + lifetime_s;
  Result<std::string> cert = net::pki::Issue(ca_pem_, ca_key_pem_, key.value(), spec);
  if (!cert) return cert.take_error();
  std::string chain = cert.value() + ca_pem_;
  if (Status s = files::WriteAtomically(key_path, key.value(), 0600); !s) return s.take_error();
  if (Status s = files::WriteAtomically(cert_path, chain, 0600); !s) return s.take_error();
  server_chain_pem_ = chain;
  server_key_pem_ = key.value();
  log::Info("tls", "issued the server certificate", {{"why", why}, {"path", cert_path}});
  return true;
}

Result<std::string> ClusterCa::IssueNodeCert(const std::string& csr_pem, const std::string& node_id, int64_t now_unix,
                                             int64_t lifetime_s) const {
  Result<std::string> pub = net::pki::RequestPublicKey(csr_pem);
  if (!pub) return pub.take_error();
  net::pki::CertSpec spec;
  spec.use = net::pki::CertSpec::Use::kClient;
  spec.common_name = node_id;
  spec.not_before_unix = now_unix - ClockSkew(lifetime_s);
  spec.not_after_unix = now_unix + lifetime_s;
  return net::pki::Issue(ca_pem_, ca_key_pem_, pub.value(), spec);
}

Status ClusterCa::Adopt(const std::string& data_dir, const std::string& ca_pem, const std::string& ca_key_pem) {
  std::string cert_path = data_dir + "/ca.crt", key_path = data_dir + "/ca.key";
  std::string have = ReadAll(cert_path);
  Result<net::pki::CertInfo> given = net::pki::Inspect(ca_pem);
  if (!given) return Error::Invalid("the cluster's CA certificate: " + given.error().message);
  if (!have.empty()) {
    Result<net::pki::CertInfo> mine = net::pki::Inspect(have);
    if (mine && mine->fingerprint == given->fingerprint) return {};
    return Error::Invalid(data_dir + " holds the CA of another cluster (" + cert_path +
                          "): a server joins with an empty data directory");
  }
  if (Status s = files::WriteAtomically(key_path, ca_key_pem, 0600); !s) return s;
  return files::WriteAtomically(cert_path, ca_pem, 0600);
}

Result<ClusterCa::Identity> ClusterCa::IssuePeerCert(uint64_t server_id, int64_t now_unix, int64_t lifetime_s) const {
  Result<std::string> key = net::pki::NewKey();
  if (!key) return key.take_error();
  net::pki::CertSpec spec;
  spec.use = net::pki::CertSpec::Use::kClient;
  spec.common_name = "server:" + std::to_string(server_id);
  spec.not_before_unix = now_unix - ClockSkew(lifetime_s);
  spec.not_after_unix = now_unix + lifetime_s;
  Result<std::string> cert = net::pki::Issue(ca_pem_, ca_key_pem_, key.value(), spec);
  if (!cert) return cert.take_error();
  return Identity{cert.value(), key.value()};
}

void HostNames(const std::vector<std::string>& advertise, std::vector<std::string>* dns_names,
               std::vector<std::string>* addresses) {
  auto add = [](std::vector<std::string>* v, const std::string& x) {
    if (!x.empty() && !Contains(*v, x)) v->push_back(x);
  };
  auto is_address = [](const std::string& s) {
    unsigned char buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
  };
  for (const std::string& a : advertise) add(is_address(a) ? addresses : dns_names, a);
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) add(dns_names, host);
  add(dns_names, "localhost");
  add(addresses, "127.0.0.1");
  add(addresses, "::1");
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;
      inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    add(addresses, text);
  }
  freeifaddrs(list);
}

}  // namespace berth::server
