// TLS and mutual TLS of the inference server, real handshakes on loopback: certificates from the
// project's own PKI (ronghe/tls/x509.h), cpp-httplib's SSL client and gRPC's SSL channel.
#include "ronghe/tls/tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "ronghe/base/file.h"
#include "ronghe/base/openssl.h"
#include "ronghe/serve/grpc.h"
#include "ronghe/serve/http.h"
#include "ronghe/serve/inference.grpc.pb.h"
#include "ronghe/serve/server.h"
#include "ronghe/tls/x509.h"

namespace ronghe::serve {
namespace {

namespace fs = std::filesystem;

// A CA with a server certificate for 127.0.0.1 and a client certificate, and a second CA
// (an outsider) with its own client certificate.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/ronghe-serve-tls-test-" + std::to_string(::getpid());
    fs::remove_all(dir_);
    ASSERT_TRUE(MakeDirs(dir_).ok());
    auto ca = tls::MakeCa("serving");
    auto other = tls::MakeCa("outsiders");
    ASSERT_TRUE(ca.ok() && other.ok());
    tls::CertificateRequest server{"serving", "server", {"localhost"}, {"127.0.0.1"}, true};
    auto s = tls::MakeLeaf(*ca, server);
    auto c = tls::MakeLeaf(*ca, {"serving", "client"});
    auto o = tls::MakeLeaf(*other, {"outsiders", "intruder"});
    server.days = -1;
    auto expired = tls::MakeLeaf(*ca, server);
    ASSERT_TRUE(s.ok() && c.ok() && o.ok() && expired.ok());
    Write("ca.pem", ca->cert_pem);
    Write("other-ca.pem", other->cert_pem);
    Write("server.pem", s->cert_pem);
    Write("server.key", s->key_pem, 0600);
    Write("client.pem", c->cert_pem);
    Write("client.key", c->key_pem, 0600);
    Write("intruder.pem", o->cert_pem);
    Write("intruder.key", o->key_pem, 0600);
    Write("expired.pem", expired->cert_pem);
    Write("expired.key", expired->key_pem, 0600);
    ServerOptions so;
    so.repository.dir = std::string(RONGHE_SOURCE_DIR) + "/examples/serving/repo";
    auto server_or = InferenceServer::Create(so);
    ASSERT_TRUE(server_or.ok()) << server_or.status().message();
    server_ = std::move(server_or).value();
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  void Write(const std::string& name, const std::string& text, mode_t mode = 0644) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/" + name, text, mode).ok());
  }
  std::string F(const std::string& name) const { return dir_ + "/" + name; }
  TlsOptions Tls(bool mutual) const {
    return {F("server.pem"), F("server.key"), mutual ? F("ca.pem") : ""};
  }

  std::unique_ptr<HttpFrontend> StartHttp(const TlsOptions& tls) {
    HttpOptions h;
    h.host = "127.0.0.1";
    h.port = 0;
    h.tls = tls;
    auto http = HttpFrontend::Start(server_.get(), h);
    EXPECT_TRUE(http.ok()) << http.status().message();
    return http.ok() ? std::move(http).value() : nullptr;
  }
  // The status of GET /v2/health/ready over HTTPS, or -1 when no response came (handshake refused).
  int Ready(int port, const std::string& server_ca, const std::string& cert = "",
            const std::string& key = "") {
    httplib::SSLClient c("127.0.0.1", port, cert, key);
    c.set_ca_cert_path(server_ca.c_str());
    c.enable_server_certificate_verification(true);
    c.set_connection_timeout(10, 0);
    c.set_read_timeout(10, 0);
    auto r = c.Get("/v2/health/ready");
    return r ? r->status : -1;
  }

  std::string dir_;
  std::unique_ptr<InferenceServer> server_;
};

TEST_F(TlsTest, MutualTlsOverHttpAdmitsOnlyClientsOfTheCa) {
  auto http = StartHttp(Tls(true));
  ASSERT_TRUE(http);
  int port = http->port();
  EXPECT_EQ(Ready(port, F("ca.pem"), F("client.pem"), F("client.key")), 200);
  // The KServe surface is the same over TLS: the example fraud request is answered.
  {
    httplib::SSLClient c("127.0.0.1", port, F("client.pem"), F("client.key"));
    c.set_ca_cert_path(F("ca.pem").c_str());
    c.enable_server_certificate_verification(true);
    auto body = ReadFile(std::string(RONGHE_SOURCE_DIR) + "/examples/serving/fraud.json");
    ASSERT_TRUE(body.ok());
    auto r = c.Post("/v2/models/fraud/versions/1/infer", *body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_NE(r->body.find("\"probabilities\""), std::string::npos) << r->body;
  }
  EXPECT_EQ(Ready(port, F("ca.pem")), -1);                                        // no certificate
  EXPECT_EQ(Ready(port, F("ca.pem"), F("intruder.pem"), F("intruder.key")), -1);  // another CA's
  EXPECT_EQ(Ready(port, F("other-ca.pem"), F("client.pem"), F("client.key")),
            -1);  // server not trusted
  httplib::Client plain("127.0.0.1", port);
  plain.set_read_timeout(10, 0);
  auto r = plain.Get("/v2/health/ready");
  EXPECT_FALSE(r && r->status == 200);  // plaintext
  // The refused handshakes did not hurt the server.
  EXPECT_EQ(Ready(port, F("ca.pem"), F("client.pem"), F("client.key")), 200);
}

TEST_F(TlsTest, ServerOnlyTlsOverHttpNeedsNoClientCertificate) {
  auto http = StartHttp(Tls(false));
  ASSERT_TRUE(http);
  EXPECT_EQ(Ready(http->port(), F("ca.pem")), 200);
  EXPECT_EQ(Ready(http->port(), F("other-ca.pem")), -1);
}

TEST_F(TlsTest, MutualTlsOverGrpc) {
  GrpcOptions g;
  g.host = "127.0.0.1";
  g.port = 0;
  g.tls = Tls(true);
  auto frontend = GrpcFrontend::Start(server_.get(), g);
  ASSERT_TRUE(frontend.ok()) << frontend.status().message();
  std::string target = "127.0.0.1:" + std::to_string((*frontend)->port());
  auto live = [&](const std::string& cert, const std::string& key) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ReadFile(F("ca.pem"));
    if (!cert.empty()) {
      ssl.pem_cert_chain = *ReadFile(F(cert));
      ssl.pem_private_key = *ReadFile(F(key));
    }
    auto client = inference::GRPCInferenceService::NewStub(
        grpc::CreateChannel(target, grpc::SslCredentials(ssl)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::ServerLiveRequest req;
    inference::ServerLiveResponse resp;
    grpc::Status st = client->ServerLive(&ctx, req, &resp);
    return st.ok() && resp.live();
  };
  EXPECT_TRUE(live("client.pem", "client.key"));
  EXPECT_FALSE(live("", ""));
  EXPECT_FALSE(live("intruder.pem", "intruder.key"));
  (*frontend)->Stop();
}

TEST_F(TlsTest, BadFilesAreRefusedWithTheFileNamed) {
  auto refused = [&](TlsOptions o, StatusCode code, const std::string& needle) {
    auto m = LoadTls(o);
    ASSERT_FALSE(m.ok()) << needle;
    EXPECT_EQ(m.status().code(), code) << m.status().message();
    EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status().message();
    // The front ends refuse to start on the same files, and say the same.
    HttpOptions h;
    h.host = "127.0.0.1";
    h.port = 0;
    h.tls = o;
    auto http = HttpFrontend::Start(server_.get(), h);
    ASSERT_FALSE(http.ok());
    EXPECT_NE(http.status().message().find(needle), std::string::npos) << http.status().message();
  };
  ASSERT_TRUE(LoadTls(Tls(true)).ok());
  refused({F("server.pem"), ""}, StatusCode::kInvalidArgument, "--tls-key");
  refused({F("server.pem"), F("client.key")}, StatusCode::kInvalidArgument,
          F("client.key") + ": is not the key");
  refused({F("ca.pem") + ".missing", F("server.key")}, StatusCode::kNotFound,
          F("ca.pem") + ".missing");
  refused({F("server.pem"), F("server.key") + ".missing"}, StatusCode::kNotFound,
          F("server.key") + ".missing");
  refused({F("server.key"), F("server.key")}, StatusCode::kInvalidArgument,
          F("server.key") + ": no PEM certificate");
  Write("cert-as-key.pem", *ReadFile(F("server.pem")), 0600);
  refused({F("server.pem"), F("cert-as-key.pem")}, StatusCode::kInvalidArgument,
          F("cert-as-key.pem") + ": not a PEM private key");
  {
    // The same key, encrypted with a passphrase: refused at once, never a terminal prompt.
    std::string plain = *ReadFile(F("server.key"));
    OpenSslPtr<BIO, BIO_free_all> in(BIO_new_mem_buf(plain.data(), static_cast<int>(plain.size())));
    OpenSslPtr<EVP_PKEY, EVP_PKEY_free> k(
        PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
    OpenSslPtr<BIO, BIO_free_all> out(BIO_new(BIO_s_mem()));
    ASSERT_TRUE(k && out);
    char pass[] = "secret";
    ASSERT_EQ(PEM_write_bio_PrivateKey(out.get(), k.get(), EVP_aes_256_cbc(),
                                       reinterpret_cast<unsigned char*>(pass), 6, nullptr, nullptr),
              1);
    char* data = nullptr;
    long n = BIO_get_mem_data(out.get(), &data);
    Write("encrypted.key", std::string(data, static_cast<size_t>(n)), 0600);
  }
  refused({F("server.pem"), F("encrypted.key")}, StatusCode::kInvalidArgument,
          F("encrypted.key") + ": the TLS key is encrypted");
  refused({F("expired.pem"), F("expired.key")}, StatusCode::kFailedPrecondition,
          F("expired.pem") + ": the certificate has expired");
  refused({F("server.pem"), F("server.key"), F("client.key")}, StatusCode::kInvalidArgument,
          F("client.key") + ": no PEM certificate");
  // A key others can read is refused, naming its mode; 0640 is accepted only from root.
  ASSERT_EQ(::chmod(F("server.key").c_str(), 0644), 0);
  refused(Tls(false), StatusCode::kFailedPrecondition,
          F("server.key") + ": group or others can access the TLS key (mode 0644)");
  ASSERT_EQ(::chmod(F("server.key").c_str(), 0640), 0);
  EXPECT_EQ(LoadTls(Tls(false)).ok(), ::geteuid() == 0);
}

}  // namespace
}  // namespace ronghe::serve
