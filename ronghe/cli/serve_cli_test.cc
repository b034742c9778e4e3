// `ronghe serve` as a user runs it: the committed example repository, the example request bodies,
// SIGTERM draining a request in flight, experiments promoted from another shell, calibrate, TLS.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/cli/test_util.h"
#include "ronghe/serve/kserve.h"
#include "ronghe/tls/x509.h"

namespace ronghe {
namespace {

using nlohmann::json;
using testing::FreshHome;
using testing::RunRonghe;
using testing::Slurp;
using testing::SourcePath;
using testing::SpawnRonghe;
using testing::WaitForExit;

// Starts `ronghe serve` on any free port and returns its port once it says it is serving.
struct Server {
  pid_t pid = -1;
  int port = 0;
  std::string home;
  Server(const std::string& home_dir, std::vector<std::string> extra) : home(home_dir) {
    std::vector<std::string> args = {"serve",  "--repo",    SourcePath("examples/serving/repo"),
                                     "--host", "127.0.0.1", "--http",
                                     "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid = SpawnRonghe(home, args, "serve");
    std::regex ready(R"(on https?://127\.0\.0\.1:(\d+))");
    for (int i = 0; i < 3000 && port == 0; ++i) {
      std::string out = Slurp(home + "/serve.stdout");
      std::smatch m;
      if (std::regex_search(out, m, ready)) {
        port = std::stoi(m[1]);
      } else if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;  // it exited (the test reads why from serve.stderr)
        break;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
  ~Server() {
    if (pid > 0 && ::waitpid(pid, nullptr, WNOHANG) == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  std::unique_ptr<httplib::Client> Client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(60, 0);
    return c;
  }
};

std::pair<int, json> Post(httplib::Client& c, const std::string& path, const std::string& body) {
  auto r = c.Post(path.c_str(), body, "application/json");
  if (!r) return {-1, json()};
  return {r->status, json::parse(r->body, nullptr, false)};
}

TEST(ServeCliTest, ExampleRepositoryAnswersTheExampleBodiesAndDrainsOnSigterm) {
  std::string home = FreshHome("serve-example");
  // A long queue delay keeps a lone request waiting in the batcher, so SIGTERM surely finds it
  // in flight.
  Server s(home, {"--grpc", "0", "--max-queue-delay-us", "1500000", "--access-log",
                  home + "/access.log"});
  ASSERT_GT(s.port, 0) << Slurp(home + "/serve.stderr");
  auto c = s.Client();
  EXPECT_EQ(c->Get("/v2/health/ready")->status, 200);
  std::string out = Slurp(home + "/serve.stdout");
  EXPECT_NE(out.find("grpc://127.0.0.1:"), std::string::npos) << out;
  for (const char* model : {"fraud", "fashion", "fashion-cnn", "fashion-light"}) {
    std::string body =
        ReadFile(SourcePath(std::string("examples/serving/") + model + ".json")).value();
    auto [code, resp] = Post(*c, std::string("/v2/models/") + model + "/infer", body);
    ASSERT_EQ(code, 200) << model << ": " << resp.dump();
    bool has_class = false;
    for (const auto& o : resp["outputs"]) {
      if (o["name"] != "class") continue;
      has_class = true;
      // The example images are the test set's first two: an ankle boot (9) and a pullover (2).
      if (std::string(model) != "fraud")
        EXPECT_EQ(o["data"], json({9, 2})) << model;
      else
        EXPECT_EQ(o["data"].size(), 2u);
    }
    EXPECT_TRUE(has_class) << model;
    // The same example in the binary tensor form, outputs binary too: the same answer, bit for
    // bit (outputs decoded from both forms into raw bytes).
    size_t header = 0;
    auto binary = serve::ToBinaryRequest(body, /*binary_outputs=*/true, &header);
    ASSERT_TRUE(binary.ok()) << model << ": " << binary.status().message();
    auto br = c->Post((std::string("/v2/models/") + model + "/infer").c_str(),
                      {{"Inference-Header-Content-Length", std::to_string(header)}}, *binary,
                      "application/octet-stream");
    ASSERT_TRUE(br && br->status == 200) << model << ": " << (br ? br->body : "no answer");
    auto got = serve::DecodeInferResponse(
        br->body, std::stoul(br->get_header_value("Inference-Header-Content-Length")));
    auto want = serve::DecodeInferResponse(resp.dump(), 0);
    ASSERT_TRUE(got.ok() && want.ok()) << model;
    ASSERT_EQ(got->size(), want->size()) << model;
    for (size_t i = 0; i < got->size(); ++i) {
      // The cascade may audit a request (run it whole on the full model) at random, and a
      // batch of a different size may differ in the last bits: compare its classes only.
      if (std::string(model) == "fashion" && (*want)[i].name != "class") continue;
      EXPECT_EQ((*got)[i].data, (*want)[i].data) << model << " " << (*got)[i].name;
    }
  }

  // One request waits in the queue (1.5 s delay); SIGTERM arrives; the request is answered and the
  // server exits 0.
  json body = json::parse(ReadFile(SourcePath("examples/serving/fashion-cnn.json")).value());
  std::thread inflight([&] {
    auto c2 = s.Client();
    auto [code, resp] = Post(*c2, "/v2/models/fashion-cnn/infer", body.dump());
    EXPECT_EQ(code, 200) << resp.dump();
  });
  for (int i = 0; i < 500; ++i) {
    std::string m = c->Get("/metrics")->body;
    if (m.find("ronghe_inference_queue_size{model=\"fashion-cnn\",version=\"1\"} 1") !=
        std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(s.pid, SIGTERM);
  inflight.join();
  EXPECT_EQ(WaitForExit(s.pid, 30), 0);
  std::string err = Slurp(home + "/serve.stderr");
  EXPECT_NE(err.find("draining"), std::string::npos) << err;
  EXPECT_NE(err.find("stopped"), std::string::npos) << err;
  // The access log has one JSON line per request with its route and status.
  std::ifstream log(home + "/access.log");
  std::string line;
  int infers = 0;
  while (std::getline(log, line)) {
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    if (j["route"] == "infer" && j["status"] == 200) ++infers;
  }
  EXPECT_EQ(infers, 9);  // 4 examples as JSON, 4 in binary, 1 in flight at SIGTERM
  auto runs = RunRonghe(home, {"runs", "list", "--kind", "serve"});
  EXPECT_NE(runs.out.find("succeeded"), std::string::npos) << runs.out;
}

// `ronghe perf` against a real server, JSON and binary, and in process; its usage errors.
TEST(ServeCliTest, PerfMeasuresTheServerAndTheModelInProcess) {
  std::string home = FreshHome("serve-perf");
  Server s(home, {});
  ASSERT_GT(s.port, 0) << Slurp(home + "/serve.stderr");
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port);
  for (bool binary : {false, true}) {
    std::vector<std::string> args = {"perf",
                                     "--url",
                                     url,
                                     "--model",
                                     "fashion-cnn",
                                     "--input",
                                     SourcePath("examples/serving/fashion-cnn.json"),
                                     "--concurrency",
                                     "1,2",
                                     "--duration",
                                     "0.5",
                                     "--warmup",
                                     "0.1",
                                     "--json"};
    if (binary) args.push_back("--binary");
    auto r = RunRonghe(home, args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json rows = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(rows.is_array() && rows.size() == 2) << r.out;
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(rows[i]["concurrency"], i == 0 ? 1 : 2);
      EXPECT_GT(rows[i]["requests"].get<int64_t>(), 0) << r.out;
      EXPECT_GT(rows[i]["requests_per_s"].get<double>(), 0) << r.out;
      EXPECT_EQ(rows[i]["errors"], 0) << r.out;
      EXPECT_LE(rows[i]["p50_ms"].get<double>(), rows[i]["p99_ms"].get<double>()) << r.out;
    }
  }
  auto missing = RunRonghe(home, {"perf", "--url", url, "--model", "nope", "--input",
                                  SourcePath("examples/serving/fashion-cnn.json")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("HTTP 404"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("unknown model 'nope'"), std::string::npos) << missing.err;
  auto bad_url = RunRonghe(home, {"perf", "--url", "127.0.0.1:1", "--model", "fraud", "--input",
                                  SourcePath("examples/serving/fraud.json")});
  EXPECT_EQ(bad_url.exit_code, 2);
  EXPECT_NE(bad_url.err.find("--url: '127.0.0.1:1' is not http://HOST:PORT"), std::string::npos)
      << bad_url.err;

  auto in_process =
      RunRonghe(home, {"perf", "--in-process", "--repo", SourcePath("examples/serving/repo"),
                       "--model", "fashion-light", "--batch-sizes", "1,4", "--duration", "0.3",
                       "--instances", "1", "--json"});
  ASSERT_EQ(in_process.exit_code, 0) << in_process.err;
  json rows = json::parse(in_process.out, nullptr, false);
  ASSERT_TRUE(rows.is_array() && rows.size() == 2) << in_process.out;
  EXPECT_EQ(rows[0]["batch_size"], 1);
  EXPECT_EQ(rows[1]["batch_size"], 4);
  EXPECT_GT(rows[1]["rows_per_s"].get<double>(), 0);
  auto route = RunRonghe(home, {"perf", "--in-process", "--repo",
                                SourcePath("examples/serving/repo"), "--model", "fashion"});
  EXPECT_EQ(route.exit_code, 1);
  EXPECT_NE(route.err.find("no version directory"), std::string::npos) << route.err;
  auto no_repo = RunRonghe(home, {"perf", "--in-process", "--model", "fraud"});
  EXPECT_EQ(no_repo.exit_code, 2);
  EXPECT_NE(no_repo.err.find("--repo and --model are required"), std::string::npos) << no_repo.err;
}

TEST(ServeCliTest, ExperimentPromotedFromAnotherShellReachesTheServer) {
  std::string home = FreshHome("serve-experiment");
  Server s(home, {});
  ASSERT_GT(s.port, 0) << Slurp(home + "/serve.stderr");
  auto c = s.Client();
  json body = json::parse(ReadFile(SourcePath("examples/serving/fraud.json")).value());
  std::set<std::string> versions;
  for (int k = 0; k < 40; ++k) {
    body["parameters"]["customer"] = "c" + std::to_string(k);
    body["id"] = "q" + std::to_string(k);
    auto [code, resp] = Post(*c, "/v2/models/fraud/infer", body.dump());
    ASSERT_EQ(code, 200) << resp.dump();
    versions.insert(resp["model_version"].get<std::string>());
  }
  EXPECT_EQ(versions, (std::set<std::string>{"1", "2"}));  // 80/20 over 40 customers
  auto list = RunRonghe(home, {"experiments", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("fraud-v2"), std::string::npos) << list.out;
  auto promote = RunRonghe(home, {"experiments", "promote", "fraud-v2"});
  ASSERT_EQ(promote.exit_code, 0) << promote.err;
  EXPECT_NE(promote.out.find("'challenger'"), std::string::npos) << promote.out;
  // The server reads decisions from the store every second.
  bool all_challenger = false;
  for (int attempt = 0; attempt < 100 && !all_challenger; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    all_challenger = true;
    for (int k = 0; k < 10; ++k) {
      body["parameters"]["customer"] = "c" + std::to_string(k);
      auto [code, resp] = Post(*c, "/v2/models/fraud/infer", body.dump());
      if (code != 200 || resp["model_version"] != "2") all_challenger = false;
    }
  }
  EXPECT_TRUE(all_challenger);
  auto show = RunRonghe(home, {"experiments", "show", "fraud-v2"});
  EXPECT_NE(show.out.find("promoted (challenger)"), std::string::npos) << show.out;
  EXPECT_NE(RunRonghe(home, {"experiments", "promote", "fraud-v2", "--variant", "gold"})
                .err.find("no variant 'gold'"),
            std::string::npos);
  EXPECT_NE(RunRonghe(home, {"experiments", "show", "nope"}).err.find("no experiment 'nope'"),
            std::string::npos);
}

TEST(ServeCliTest, BadRepositoryOrBusyPortFailsClearly) {
  std::string home = FreshHome("serve-bad");
  std::string repo = home + "/repo";
  ASSERT_TRUE(MakeDirs(repo + "/m/1").ok());
  ASSERT_TRUE(WriteFileAtomic(repo + "/m/1/model.rhm", "garbage").ok());
  auto r = RunRonghe(home, {"serve", "--repo", repo, "--http", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("m/1/model.rhm"), std::string::npos) << r.err;

  Server s(home, {});
  ASSERT_GT(s.port, 0);
  auto busy = RunRonghe(home, {"serve", "--repo", SourcePath("examples/serving/repo"), "--host",
                               "127.0.0.1", "--http", std::to_string(s.port)});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.err.find("cannot listen on 127.0.0.1:" + std::to_string(s.port)),
            std::string::npos)
      << busy.err;
  // Same for gRPC: a port in use is refused, never shared.
  auto grpc_busy =
      RunRonghe(home, {"serve", "--repo", SourcePath("examples/serving/repo"), "--host",
                       "127.0.0.1", "--http", "0", "--grpc", std::to_string(s.port)});
  EXPECT_EQ(grpc_busy.exit_code, 1);
  EXPECT_NE(grpc_busy.err.find("cannot listen for gRPC"), std::string::npos) << grpc_busy.err;
}

TEST(ServeCliTest, CalibratePicksAThresholdOnValidationAndReportsTest) {
  std::string home = FreshHome("calibrate");
  auto r = RunRonghe(home, {"calibrate", "--repo", SourcePath("examples/serving/repo"), "--route",
                            "fashion", "--max-drop", "0.01"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(threshold ([0-9.]+))"))) << r.out;
  double t = std::stod(m[1]);
  EXPECT_GT(t, 0.0);
  EXPECT_LT(t, 1.0);
  // validation  6000  xx.x%  cascade  full  light
  ASSERT_TRUE(std::regex_search(
      r.out, m,
      std::regex(R"(validation\s+6000\s+([0-9.]+)%\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+))")))
      << r.out;
  double escalated = std::stod(m[1]), cascade = std::stod(m[2]), full = std::stod(m[3]),
         light = std::stod(m[4]);
  EXPECT_GE(cascade, full - 0.01 - 1e-9);
  EXPECT_GT(escalated, 0.0);
  EXPECT_LT(escalated, 100.0);
  EXPECT_GE(cascade, light);
  EXPECT_NE(r.out.find("test "), std::string::npos);
  auto bad = RunRonghe(
      home, {"calibrate", "--repo", SourcePath("examples/serving/repo"), "--route", "fraud"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("no [cascade] section"), std::string::npos) << bad.err;
}

TEST(ServeCliTest, TlsFlagsServeHttpsToClientsOfTheCaOnly) {
  // This process is the client: a client the server refuses may write to a socket the server has
  // closed, and OpenSSL's write() then raises SIGPIPE here.
  std::signal(SIGPIPE, SIG_IGN);
  std::string home = FreshHome("serve-tls");
  auto ca = tls::MakeCa("serving");
  ASSERT_TRUE(ca.ok());
  auto server = tls::MakeLeaf(*ca, {"serving", "server", {"localhost"}, {"127.0.0.1"}, true});
  auto client = tls::MakeLeaf(*ca, {"serving", "app"});
  ASSERT_TRUE(server.ok() && client.ok());
  ASSERT_TRUE(WriteFileAtomic(home + "/ca.pem", ca->cert_pem).ok());
  ASSERT_TRUE(WriteFileAtomic(home + "/server.pem", server->cert_pem).ok());
  ASSERT_TRUE(WriteFileAtomic(home + "/server.key", server->key_pem, 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(home + "/app.pem", client->cert_pem).ok());
  ASSERT_TRUE(WriteFileAtomic(home + "/app.key", client->key_pem, 0600).ok());
  std::vector<std::string> tls = {"--tls-cert",         home + "/server.pem", "--tls-key",
                                  home + "/server.key", "--tls-client-ca",    home + "/ca.pem"};
  {
    Server s(home, tls);
    ASSERT_GT(s.port, 0) << Slurp(home + "/serve.stderr");
    EXPECT_NE(Slurp(home + "/serve.stdout").find("on https://127.0.0.1:"), std::string::npos);
    EXPECT_NE(Slurp(home + "/serve.stdout").find("client certificates required"),
              std::string::npos);
    httplib::SSLClient c("127.0.0.1", s.port, home + "/app.pem", home + "/app.key");
    c.set_ca_cert_path((home + "/ca.pem").c_str());
    c.enable_server_certificate_verification(true);
    c.set_read_timeout(60, 0);
    auto body = Slurp(SourcePath("examples/serving/fraud.json"));
    auto r = c.Post("/v2/models/fraud/versions/1/infer", body, "application/json");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200) << r->body;
    httplib::SSLClient anonymous("127.0.0.1", s.port);
    anonymous.set_ca_cert_path((home + "/ca.pem").c_str());
    anonymous.enable_server_certificate_verification(true);
    EXPECT_FALSE(anonymous.Get("/v2/health/ready"));
    ::kill(s.pid, SIGTERM);
    EXPECT_EQ(WaitForExit(s.pid, 30), 0);
  }
  // A key others can read, or a client CA without a certificate, is refused before serving.
  ASSERT_EQ(::chmod((home + "/server.key").c_str(), 0644), 0);
  std::vector<std::string> args = {
      "serve", "--repo", SourcePath("examples/serving/repo"), "--host", "127.0.0.1", "--http", "0"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = args;
    a.insert(a.end(), extra.begin(), extra.end());
    return RunRonghe(home, a);
  };
  auto open_key = with(tls);
  EXPECT_NE(open_key.exit_code, 0);
  EXPECT_NE(
      open_key.err.find(home + "/server.key: group or others can access the TLS key (mode 0644)"),
      std::string::npos)
      << open_key.err;
  auto ca_only = with({"--tls-client-ca", home + "/ca.pem"});
  EXPECT_NE(ca_only.exit_code, 0);
  EXPECT_NE(ca_only.err.find("--tls-client-ca needs --tls-cert and --tls-key"), std::string::npos)
      << ca_only.err;
}

}  // namespace
}  // namespace ronghe
