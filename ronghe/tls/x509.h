// The consortium's certificates for mutual TLS: one CA, a server+client certificate for the
// coordinator and a client certificate per party, all ECDSA P-256 / SHA-256 (OpenSSL 3).
// A party is identified by its certificate: CN = party name, SAN URI
// ronghe://<consortium>/<party>.
#pragma once

#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::tls {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;  // secret
};

struct CertificateRequest {
  std::string consortium;        // consortium id (goes into O and the SAN URI)
  std::string name;              // CN: "coordinator" or the party name
  std::vector<std::string> dns;  // DNS SANs (server certificates)
  std::vector<std::string> ips;  // IP SANs (server certificates)
  bool server = false;           // serverAuth in addition to clientAuth
  int days = 825;                // Default: 825 days of validity.
};

// A self-signed CA for the consortium (10 years).
Result<PemPair> MakeCa(const std::string& consortium);
// A leaf certificate signed by `ca`.
Result<PemPair> MakeLeaf(const PemPair& ca, const CertificateRequest& request);

// Checks `cert_pem` chains to `ca_pem`, is valid now, and that `key_pem` (if not empty) is its key.
// Returns the certificate's CN.
Result<std::string> VerifyLeaf(const std::string& ca_pem, const std::string& cert_pem,
                               const std::string& key_pem = "");

// For a peer's certificate presented over mutual TLS: VerifyLeaf, plus the SAN URI
// ronghe://<consortium>/<CN>. Returns the party name (CN).
Result<std::string> AuthenticateParty(const std::string& ca_pem, const std::string& cert_pem,
                                      const std::string& consortium);

}  // namespace ronghe::tls
