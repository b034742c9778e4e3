#include "ronghe/tls/tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "ronghe/base/file.h"
#include "ronghe/base/openssl.h"

namespace ronghe::tls {

namespace {

using BioPtr = OpenSslPtr<BIO, BIO_free_all>;
using X509Ptr = OpenSslPtr<X509, X509_free>;
using KeyPtr = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;

BioPtr MemBio(const std::string& s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

// Every certificate in a PEM text, in order.
Result<std::vector<X509Ptr>> Certificates(const std::string& pem, const std::string& file) {
  std::vector<X509Ptr> out;
  BioPtr bio = MemBio(pem);
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(c);
  ERR_clear_error();  // the read past the last certificate leaves "no start line"
  if (out.empty()) return InvalidArgument(file + ": no PEM certificate in the file");
  return out;
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> GrpcServerCredentials(const std::string& cert_pem,
                                                               const std::string& key_pem,
                                                               const std::string& client_ca_pem) {
  grpc::SslServerCredentialsOptions ssl(
      client_ca_pem.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = client_ca_pem;
  ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  return grpc::SslServerCredentials(ssl);
}

std::shared_ptr<grpc::ChannelCredentials> GrpcClientCredentials(const std::string& ca_pem,
                                                                const std::string& cert_pem,
                                                                const std::string& key_pem) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  ssl.pem_private_key = key_pem;
  ssl.pem_cert_chain = cert_pem;
  return grpc::SslCredentials(ssl);
}

Result<TlsMaterial> LoadTls(const TlsOptions& o) {
  if (o.cert_file.empty() || o.key_file.empty()) {
    return InvalidArgument("TLS needs both a certificate (--tls-cert) and its key (--tls-key)");
  }
  TlsMaterial m;
  // The key's mode first: a key others can read is compromised whatever else holds.
  RETURN_IF_ERROR(CheckSecretFileMode(o.key_file, "TLS key"));
  ASSIGN_OR_RETURN(m.cert_pem, ReadFile(o.cert_file));
  ASSIGN_OR_RETURN(m.key_pem, ReadFile(o.key_file));
  ASSIGN_OR_RETURN(auto chain, Certificates(m.cert_pem, o.cert_file));
  if (m.key_pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||  // PKCS#8
      m.key_pem.find("Proc-Type: 4,ENCRYPTED") != std::string::npos) {  // traditional
    // OpenSSL's default would prompt on the terminal for a passphrase and hang a server.
    return InvalidArgument(
        o.key_file +
        ": the TLS key is encrypted; a server reads it unattended, "
        "so store it decrypted with mode 0600 (openssl pkey -in KEY -out KEY.plain)");
  }
  BioPtr kb = MemBio(m.key_pem);
  // A callback that supplies no passphrase, so nothing ever prompts on the terminal.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return -1; };
  KeyPtr key(PEM_read_bio_PrivateKey(kb.get(), nullptr, no_passphrase, nullptr));
  if (!key) return InvalidArgument(OpenSslError(o.key_file + ": not a PEM private key"));
  if (X509_check_private_key(chain[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(o.key_file + ": is not the key of the certificate in " + o.cert_file);
  }
  if (X509_cmp_current_time(X509_get0_notAfter(chain[0].get())) <= 0) {
    return FailedPrecondition(o.cert_file + ": the certificate has expired");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(chain[0].get())) > 0) {
    return FailedPrecondition(o.cert_file + ": the certificate is not valid yet");
  }
  if (!o.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(m.client_ca_pem, ReadFile(o.client_ca_file));
    RETURN_IF_ERROR(Certificates(m.client_ca_pem, o.client_ca_file).status());
  }
  return m;
}

}  // namespace ronghe::tls
