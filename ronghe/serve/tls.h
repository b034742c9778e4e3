// TLS for the inference server's HTTP and gRPC front ends: a server certificate and key, and
// optionally a client CA, which makes it mutual TLS (clients must present a certificate that CA
// signed). Triton's --grpc-use-ssl / --grpc-use-ssl-mutual, for both protocols.
#pragma once

#include <string>

#include "ronghe/base/status.h"

namespace ronghe::serve {

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

}  // namespace ronghe::serve
