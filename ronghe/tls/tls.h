// TLS files and contexts, for every party that speaks TLS: the inference server's HTTP and gRPC
// front ends (a server certificate and key, and optionally a client CA, which makes it mutual
// TLS: Triton's --grpc-use-ssl / --grpc-use-ssl-mutual), and the federation's coordinator and
// participants (always mutual TLS under the consortium CA). Certificates are made and verified
// in x509.h. One rule for secret files (CheckSecretFileMode) and one way to build gRPC
// credentials, so the two systems cannot drift apart.
#pragma once

#include <memory>
#include <string>

#include "ronghe/base/file.h"
#include "ronghe/base/status.h"

namespace grpc {
class ServerCredentials;
class ChannelCredentials;
}  // namespace grpc

namespace ronghe::tls {

// The rule for secret files lives in base (file.h), where the edge runtime reaches it too.
using ronghe::CheckSecretFileMode;

// gRPC server credentials: `client_ca_pem` "" = clients are not asked for a certificate; else
// they must present one it signed (mutual TLS).
std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const std::string& cert_pem,
                                                               const std::string& key_pem,
                                                               const std::string& client_ca_pem);
// gRPC client credentials: trust `ca_pem`; present `cert_pem`/`key_pem` when given.
std::shared_ptr<grpc::ChannelCredentials> GrpcClientCredentials(const std::string& ca_pem,
                                                                const std::string& cert_pem,
                                                                const std::string& key_pem);

struct TlsOptions {
  std::string cert_file;       // Default: "" = plaintext. PEM: the server certificate, then its
                               // intermediates, if any.
  std::string key_file;        // PEM private key of cert_file; must not be readable by group or
                               // others (PostgreSQL's rule: 0600, or 0640 when owned by root).
  std::string client_ca_file;  // Default: "" = clients are not asked for a certificate. PEM CA
                               // bundle: clients must present a certificate it signed.
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// What the front ends need, read and checked once at start.
struct TlsMaterial {
  std::string cert_pem, key_pem, client_ca_pem;
};

// Reads the files and checks what would otherwise fail at the first handshake, or never:
// both of cert and key given, the key's file mode, that the key is the certificate's, that the
// certificate is valid now, that the client CA file holds certificates. Errors name the file.
Result<TlsMaterial> LoadTls(const TlsOptions& options);

}  // namespace ronghe::tls
