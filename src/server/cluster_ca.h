// The cluster CA and the server's own certificate, kept in the data directory:
//   ca.crt      the CA certificate (PEM, 0644): what clients trust, pinned by tokens
//   ca.key      its ECDSA P-256 key (0600)
//   server.crt  the server's certificate then the CA's (PEM, 0644)
//   server.key  its key (0600)
// Made at first start; the server certificate is made anew when it nears its end
// (the last third of its life) or no longer names every host name and address of
// the server, and the TLS listener takes it without a restart.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace berth::server {

class ClusterCa {
 public:
  // Loads the CA from `data_dir`, or makes one there.
  static Result<std::unique_ptr<ClusterCa>> Open(const std::string& data_dir);

  const std::string& ca_pem() const { return ca_pem_; }
  // The hex SHA-256 of the CA certificate's DER: what tokens pin.
  const std::string& fingerprint() const { return fingerprint_; }
  const std::string& server_chain_pem() const { return server_chain_pem_; }
  const std::string& server_key_pem() const { return server_key_pem_; }

  // Loads the server certificate, making a new one when there is none, when less
  // than a third of its life is left at `now_unix`, or when it does not name all
  // of `dns_names` and `addresses`. A new certificate keeps server.key when it
  // reads as a key (a pinned public key stays valid); only a missing or broken
  // key is replaced. Returns whether it changed.
  Result<bool> EnsureServerCert(const std::vector<std::string>& dns_names, const std::vector<std::string>& addresses,
                                int64_t now_unix, int64_t lifetime_s);
  // Drops the server certificate and key held in memory, so the next
  // EnsureServerCert reads server.crt and server.key again (SIGHUP: an operator
  // replaced them). What it finds there is checked as at start.
  void ForgetServerCert() {
    server_chain_pem_.clear();
    server_key_pem_.clear();
  }

  // The CA's key (PEM), for a server joining the cluster (every server issues
  // certificates and may lead).
  const std::string& ca_key_pem() const { return ca_key_pem_; }
  // Keeps a cluster's CA in `data_dir` (a server joining it): written when the
  // directory has no CA yet; refused when it holds another.
  static Status Adopt(const std::string& data_dir, const std::string& ca_pem, const std::string& ca_key_pem);

  // A certificate for a server of the cluster to prove itself to its peers,
  // naming "server:<id>", for client authentication, with a new key.
  struct Identity {
    std::string cert_pem;
    std::string key_pem;
  };
  Result<Identity> IssuePeerCert(uint64_t server_id, int64_t now_unix, int64_t lifetime_s) const;

  // A node certificate for the key in `csr_pem` (a signing request), naming
  // `node_id`, for client authentication only.
  Result<std::string> IssueNodeCert(const std::string& csr_pem, const std::string& node_id, int64_t now_unix,
                                    int64_t lifetime_s) const;

 private:
  ClusterCa() = default;
  std::string dir_;
  std::string ca_pem_, ca_key_pem_, fingerprint_;
  std::string server_chain_pem_, server_key_pem_;
};

// The host names and addresses this host answers to, for the server certificate:
// its host name, "localhost", every address of its interfaces, and `advertise`
// (host names or addresses given with --advertise).
void HostNames(const std::vector<std::string>& advertise, std::vector<std::string>* dns_names,
               std::vector<std::string>* addresses);

}  // namespace berth::server
