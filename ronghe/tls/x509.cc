#include "ronghe/tls/x509.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "ronghe/base/openssl.h"

namespace ronghe::tls {

namespace {

using PKey = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;
using Cert = OpenSslPtr<X509, X509_free>;
using Bio = OpenSslPtr<BIO, BIO_free_all>;
using Store = OpenSslPtr<X509_STORE, X509_STORE_free>;
using StoreCtx = OpenSslPtr<X509_STORE_CTX, X509_STORE_CTX_free>;

Result<PKey> NewKey() {
  PKey k(EVP_EC_gen("P-256"));
  if (!k) return Internal(OpenSslError("EC key generation failed"));
  return k;
}

Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return Internal(OpenSslError("certificate extension " + value));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return Status::OK();
}

Result<Cert> NewCert(EVP_PKEY* key, const std::string& consortium, const std::string& cn,
                     int days) {
  Cert c(X509_new());
  X509_set_version(c.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return Internal("RAND_bytes failed");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);  // tolerate an hour of clock skew
  X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(days) * 86400);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(consortium.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return c;
}

Result<std::string> CertPem(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(b.get(), c) != 1) return Internal(OpenSslError("PEM write"));
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, n);
}

Result<std::string> KeyPem(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Internal(OpenSslError("PEM write"));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, n);
}

Result<Cert> ReadCert(const std::string& pem, const std::string& what) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Cert c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  if (!c) return DataLoss(OpenSslError(what + ": not a PEM certificate"));
  return c;
}

Result<PKey> ReadKey(const std::string& pem, const std::string& what) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PKey k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
  if (!k) return DataLoss(OpenSslError(what + ": not a PEM private key"));
  return k;
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return true;
}

}  // namespace

Result<PemPair> MakeCa(const std::string& consortium) {
  if (!ValidName(consortium))
    return InvalidArgument("consortium id '" + consortium + "' must be 1-64 of [A-Za-z0-9._-]");
  ASSIGN_OR_RETURN(PKey key, NewKey());
  ASSIGN_OR_RETURN(Cert c, NewCert(key.get(), consortium, consortium + " CA", 3650));
  X509_set_issuer_name(c.get(), X509_get_subject_name(c.get()));
  RETURN_IF_ERROR(AddExt(c.get(), c.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  RETURN_IF_ERROR(AddExt(c.get(), c.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(AddExt(c.get(), c.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(c.get(), key.get(), EVP_sha256()) == 0) return Internal(OpenSslError("CA signing"));
  PemPair out;
  ASSIGN_OR_RETURN(out.cert_pem, CertPem(c.get()));
  ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  return out;
}

Result<PemPair> MakeLeaf(const PemPair& ca, const CertificateRequest& r) {
  if (!ValidName(r.name))
    return InvalidArgument("name '" + r.name + "' must be 1-64 of [A-Za-z0-9._-]");
  if (!ValidName(r.consortium))
    return InvalidArgument("consortium id '" + r.consortium + "' is not valid");
  ASSIGN_OR_RETURN(Cert ca_cert, ReadCert(ca.cert_pem, "CA certificate"));
  ASSIGN_OR_RETURN(PKey ca_key, ReadKey(ca.key_pem, "CA key"));
  ASSIGN_OR_RETURN(PKey key, NewKey());
  ASSIGN_OR_RETURN(Cert c, NewCert(key.get(), r.consortium, r.name, r.days));
  X509_set_issuer_name(c.get(), X509_get_subject_name(ca_cert.get()));
  RETURN_IF_ERROR(AddExt(c.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddExt(c.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature"));
  RETURN_IF_ERROR(AddExt(c.get(), ca_cert.get(), NID_ext_key_usage,
                         r.server ? "serverAuth,clientAuth" : "clientAuth"));
  std::string san = "URI:ronghe://" + r.consortium + "/" + r.name;
  for (const auto& d : r.dns) san += ",DNS:" + d;
  for (const auto& ip : r.ips) san += ",IP:" + ip;
  RETURN_IF_ERROR(AddExt(c.get(), ca_cert.get(), NID_subject_alt_name, san));
  RETURN_IF_ERROR(AddExt(c.get(), ca_cert.get(), NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExt(c.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(c.get(), ca_key.get(), EVP_sha256()) == 0)
    return Internal(OpenSslError("certificate signing"));
  PemPair out;
  ASSIGN_OR_RETURN(out.cert_pem, CertPem(c.get()));
  ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  return out;
}

Result<std::string> VerifyLeaf(const std::string& ca_pem, const std::string& cert_pem,
                               const std::string& key_pem) {
  ASSIGN_OR_RETURN(Cert ca, ReadCert(ca_pem, "CA certificate"));
  ASSIGN_OR_RETURN(Cert leaf, ReadCert(cert_pem, "certificate"));
  Store store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  StoreCtx ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr);
  if (X509_verify_cert(ctx.get()) != 1) {
    return PermissionDenied(std::string("certificate does not verify against the consortium CA: ") +
                            X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  }
  if (!key_pem.empty()) {
    ASSIGN_OR_RETURN(PKey key, ReadKey(key_pem, "private key"));
    if (X509_check_private_key(leaf.get(), key.get()) != 1) {
      ERR_clear_error();
      return InvalidArgument("private key does not belong to the certificate");
    }
  }
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(leaf.get()), NID_commonName, cn, sizeof cn);
  return std::string(cn);
}

}  // namespace ronghe::tls

namespace ronghe::tls {

Result<std::string> AuthenticateParty(const std::string& ca_pem, const std::string& cert_pem,
                                      const std::string& consortium) {
  ASSIGN_OR_RETURN(std::string cn, VerifyLeaf(ca_pem, cert_pem));
  ASSIGN_OR_RETURN(Cert leaf, ReadCert(cert_pem, "certificate"));
  const std::string want = "ronghe://" + consortium + "/" + cn;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, nullptr, nullptr));
  bool found = false;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = g->d.uniformResourceIdentifier;
    std::string s(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                  ASN1_STRING_length(uri));
    if (s == want) found = true;
  }
  GENERAL_NAMES_free(names);
  if (!found)
    return PermissionDenied("certificate of '" + cn + "' is not for consortium '" + consortium +
                            "' (no SAN " + want + ")");
  return cn;
}

}  // namespace ronghe::tls
