// The edge runtime against LibTorch on the real series (gretl's hourly load with temperature,
// taylor's half-hourly demand), int8's stated bound, refusals of damaged files, and the C API from
// a C program.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/subprocess.h"
#include "ronghe/data/source.h"
#include "ronghe/edge/export.h"
#include "ronghe/edge/format.h"
#include "ronghe/edge/kernels.h"
#include "ronghe/edge/runtime.h"
#include "ronghe/edge/server.h"
#include "ronghe/train/trainer.h"

namespace ronghe::edge {
namespace {

namespace fs = std::filesystem;

std::string Home() {
  const char* h = std::getenv("RONGHE_HOME");
  if (h && *h) return h;
  return std::string(std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.ronghe";
}

data::LoadedData Load(const std::string& set, int64_t input = 0) {
  data::DataOptions o = data::DefaultDataOptions(set);
  if (input > 0) o.window.input = input;
  auto d = data::LoadData(o, Home());
  EXPECT_TRUE(d.ok()) << d.status().message();
  return std::move(d).value();
}

// A model of `kind` trained for `epochs` on `d` (0: as initialised).
std::unique_ptr<nn::Model> Trained(const data::LoadedData& d, const std::string& kind,
                                   int64_t epochs, int64_t hidden = 24, int64_t layers = 1) {
  nn::ModelConfig c;
  c.kind = kind;
  c.input_shape = d.input_shape;
  c.outputs = d.train.y.size(1);
  c.lstm_hidden = hidden;
  c.lstm_layers = layers;
  c.hidden = {32, 16};
  torch::manual_seed(7);
  auto m = nn::Model::Create(c).value();
  if (epochs > 0) {
    train::TrainOptions t;
    t.epochs = epochs;
    t.batch_size = 32;
    t.lr = 3e-3;
    t.progress = "off";
    auto tr = train::Trainer::Create(t, m.get(), &d, nullptr, "");
    EXPECT_TRUE(tr.ok()) << tr.status().message();
    auto r = (*tr)->Run(false);
    EXPECT_TRUE(r.ok()) << r.status().message();
  }
  m->SetTraining(false);
  return m;
}

struct Ran {
  int exit_code = -1;
  std::string output;
};
// Runs argv with stdout and stderr into one file; the exit code and what it printed.
Ran RunCapture(const std::vector<std::string>& argv) {
  const std::string log = testing::TempDir() + "/c_example.log";
  SpawnOptions o;
  o.argv = argv;
  o.stdout_path = o.stderr_path = log;
  auto p = Subprocess::Spawn(o);
  EXPECT_TRUE(p.ok()) << p.status().message();
  if (!p.ok()) return {};
  auto st = p->Wait(60);
  EXPECT_TRUE(st.ok());
  auto out = ReadFile(log);
  return {st.ok() ? st->AsInt() : -1, out.ok() ? *out : ""};
}

nlohmann::json Manifest(const data::LoadedData& d) {
  return {{"name", "load"},
          {"task", data::TaskName(d.task)},
          {"preprocessing", d.preprocessing},
          {"classes", d.class_names}};
}

std::unique_ptr<Model> Export(nn::Model& m, const data::LoadedData& d,
                              const std::string& precision = "fp32") {
  ExportOptions o;
  o.precision = precision;
  o.model_version = "1.0.0";
  auto bytes = ExportEdge(m, Manifest(d), o, &d.train.x);
  EXPECT_TRUE(bytes.ok()) << bytes.status().message();
  auto e = Model::FromBytes(*bytes, "export");
  EXPECT_TRUE(e.ok()) << e.status().message();
  return std::move(e).value();
}

TEST(EdgeTest, Fp32OutputsEqualLibTorchOnTheRealSeries) {
  std::printf("kernels: %s\n", KernelName());
  struct Case {
    std::string set, kind;
    int64_t layers;
  };
  for (const Case& c :
       {Case{"gretl_load", "lstm", 2}, Case{"gretl_load", "gru", 1}, Case{"gretl_load", "mlp", 1},
        Case{"taylor", "lstm", 1}, Case{"taylor", "gru", 2}}) {
    SCOPED_TRACE(c.set + " " + c.kind);
    data::LoadedData d = Load(c.set);
    auto m = Trained(d, c.kind, 1, 24, c.layers);
    auto e = Export(*m, d);
    EXPECT_EQ(e->kind(), c.kind);
    EXPECT_EQ(e->precision(), "fp32");
    auto diff = MaxDifference(*e, *m, d.test.x);
    ASSERT_TRUE(diff.ok()) << diff.status().message();
    EXPECT_LT(*diff, 1e-5) << "over " << d.test.size() << " test windows";
    std::printf("%s %s: max |edge - libtorch| = %.3g over %ld windows\n", c.set.c_str(),
                c.kind.c_str(), *diff, static_cast<long>(d.test.size()));
  }
}

TEST(EdgeTest, RawInputsAreStandardisedAndForecastsComeBackInMegawatts) {
  data::LoadedData d = Load("gretl_load");
  ASSERT_EQ(d.input_shape, (std::vector<int64_t>{24, 2}));  // load and temperature
  auto m = Trained(d, "lstm", 1);
  auto e = Export(*m, d);
  const double mean = d.preprocessing["mean"], sd = d.preprocessing["std"];
  const auto& cov = d.preprocessing["covariates"][0];
  const double tmean = cov["mean"], tsd = cov["std"];
  torch::Tensor x = d.test.x[0].contiguous();
  std::vector<float> raw(48);
  for (int64_t t = 0; t < 24; ++t) {
    raw[t * 2] = static_cast<float>(x[t][0].item<double>() * sd + mean);
    raw[t * 2 + 1] = static_cast<float>(x[t][1].item<double>() * tsd + tmean);
  }
  float out = 0, ref = 0;
  ASSERT_TRUE(e->Predict(raw.data(), 48, &out).ok());
  ASSERT_TRUE(e->PredictStandardised(x.data_ptr<float>(), 48, &ref).ok());
  EXPECT_NEAR(out, ref * sd + mean, 1e-3 * sd);
  EXPECT_GT(out, 1000);  // megawatts, not standard units
  raw[5] = std::nanf("");
  Status bad = e->Predict(raw.data(), 48, &out);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("step 2, feature 1"), std::string::npos) << bad.message();
  EXPECT_FALSE(e->Predict(raw.data(), 47, &out).ok());
}

TEST(EdgeTest, Int8StaysWithinItsStatedBoundAndItsAccuracyChangeIsReported) {
  data::LoadedData d = Load("gretl_load");
  for (const std::string kind : {"lstm", "gru", "mlp"}) {
    SCOPED_TRACE(kind);
    auto m = Trained(d, kind, 20);
    auto fp = Export(*m, d);
    auto q = Export(*m, d, "int8");
    EXPECT_EQ(q->precision(), "int8");
    auto diff = MaxDifference(*q, *m, d.test.x);
    ASSERT_TRUE(diff.ok());
    auto a = EvaluateEdge(*fp, d.test, d.task, d.preprocessing).value();
    auto b = EvaluateEdge(*q, d.test, d.task, d.preprocessing).value();
    std::printf("%s: int8 max |diff| %.4f std units; MAPE fp32 %.3f%% int8 %.3f%%\n", kind.c_str(),
                *diff, a["mape"], b["mape"]);
    // The stated bound (docs/edge.md): at every test window within 0.1 standard deviations of
    // the series for the recurrent models and 0.25 for the MLP (48 inputs into its first layer),
    // and MAPE within half a point of fp32's.
    EXPECT_LT(*diff, kind == "mlp" ? 0.25 : 0.1);
    EXPECT_LT(std::fabs(a["mape"] - b["mape"]), 0.5);
  }
}

TEST(EdgeTest, TruncatedFlippedAndForeignFilesAreRefusedWithTheReason) {
  data::LoadedData d = Load("gretl_load");
  auto m = Trained(d, "gru", 0);
  ExportOptions o;
  std::string bytes = ExportEdge(*m, Manifest(d), o, nullptr).value();
  auto refuse = [](const std::string& b, const std::string& why) {
    auto r = Model::FromBytes(b, "node.rhe");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("node.rhe"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  };
  refuse(bytes.substr(0, bytes.size() - 100), "truncated or altered");
  for (size_t at : {size_t{20}, bytes.size() / 2, bytes.size() - 40}) {
    std::string flipped = bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    refuse(flipped, "truncated or altered");
  }
  refuse("PK\x03\x04 not a model at all, longer than forty-four bytes of text here", "bad magic");
  refuse("", "too short");
  // The int8 exporter needs calibration inputs and says so.
  o.precision = "int8";
  auto r = ExportEdge(*m, Manifest(d), o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("calibration"), std::string::npos);
}

TEST(EdgeTest, TheCApiRunsFromACProgram) {
  data::LoadedData d = Load("gretl_load");
  auto m = Trained(d, "lstm", 1);
  ExportOptions o;
  o.model_version = "2.1.0";
  std::string bytes = ExportEdge(*m, Manifest(d), o, nullptr).value();
  const std::string path = testing::TempDir() + "/c_api.rhe";
  ASSERT_TRUE(WriteFileAtomic(path, bytes).ok());
  auto e = Model::FromBytes(bytes, path).value();
  std::vector<std::string> argv = {std::string(RONGHE_BINARY_DIR) + "/ronghe/edge/edge_c_example",
                                   path};
  std::vector<float> raw;
  for (int64_t t = 0; t < 24; ++t) {
    raw.push_back(2000.0f + 40.0f * static_cast<float>(t));
    raw.push_back(40.0f + 0.5f * static_cast<float>(t));
  }
  for (float v : raw) argv.push_back(std::to_string(v));
  Ran run = RunCapture(argv);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  float want = 0;
  ASSERT_TRUE(e->Predict(raw.data(), 48, &want).ok());
  float got = 0;
  char kind[16], prec[16], ver[16];
  ASSERT_EQ(std::sscanf(run.output.c_str(), "%15s %15s %15s %f", kind, prec, ver, &got), 4)
      << run.output;
  EXPECT_STREQ(kind, "lstm");
  EXPECT_STREQ(ver, "2.1.0");
  EXPECT_NEAR(got, want, 1e-3);
  // Too few values: a reason, exit 1.
  argv.resize(10);
  Ran bad = RunCapture(argv);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("48 values"), std::string::npos) << bad.output;
}

// One HTTP/1.1 request over a connected socket; the status and the body.
std::pair<int, std::string> Http(int fd, const std::string& method, const std::string& target,
                                 const std::string& body) {
  std::string req = method + " " + target +
                    " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return {-1, ""};
  std::string buf;
  char chunk[4096];
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return {-1, buf};
    buf.append(chunk, static_cast<size_t>(n));
  }
  size_t cl = buf.find("Content-Length: ");
  size_t len = std::stoul(buf.substr(cl + 16));
  while (buf.size() < end + 4 + len) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return {-1, buf};
    buf.append(chunk, static_cast<size_t>(n));
  }
  return {std::stoi(buf.substr(9, 3)), buf.substr(end + 4, len)};
}

int ConnectTcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

int ConnectUnix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

std::string WindowJson(const data::LoadedData& d, int64_t i) {
  const double mean = d.preprocessing["mean"], sd = d.preprocessing["std"];
  const auto& cov = d.preprocessing["covariates"][0];
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t t = 0; t < d.input_shape[0]; ++t) {
    rows.push_back(
        {d.test.x[i][t][0].item<double>() * sd + mean,
         d.test.x[i][t][1].item<double>() * cov["std"].get<double>() + cov["mean"].get<double>()});
  }
  return nlohmann::json{{"inputs", rows}}.dump();
}

TEST(EdgeServerTest, TcpAndUnixSocketGiveTheSameAnswersAndBadRequestsTheirReason) {
  data::LoadedData d = Load("gretl_load");
  auto m = Trained(d, "gru", 1);
  std::shared_ptr<const Model> e = Export(*m, d, "int8");
  Node node;
  node.Set(e, "1.0.0");
  ServerOptions o;
  o.port = 0;
  o.socket_path = testing::TempDir() + "/edge.sock";
  auto server = Server::Start(o, &node);
  ASSERT_TRUE(server.ok()) << server.status().message();
  int tcp = ConnectTcp((*server)->port()), ux = ConnectUnix(o.socket_path);
  for (int64_t i : {0, 17, 60}) {
    auto a = Http(tcp, "POST", "/v1/predict", WindowJson(d, i));
    auto b = Http(ux, "POST", "/v1/predict", WindowJson(d, i));  // keep-alive: same connection
    ASSERT_EQ(a.first, 200) << a.second;
    ASSERT_EQ(b.first, 200) << b.second;
    auto ja = nlohmann::json::parse(a.second), jb = nlohmann::json::parse(b.second);
    EXPECT_EQ(ja["outputs"], jb["outputs"]);
    EXPECT_EQ(ja["model_version"], "1.0.0");
    float want = 0;
    ASSERT_TRUE(e->PredictStandardised(d.test.x[i].contiguous().data_ptr<float>(), 48, &want).ok());
    EXPECT_NEAR(ja["outputs"][0].get<double>(),
                want * d.preprocessing["std"].get<double>() + d.preprocessing["mean"].get<double>(),
                0.05);
  }
  auto bad = Http(tcp, "POST", "/v1/predict", R"({"inputs": [[1, 2, 3]]})");
  EXPECT_EQ(bad.first, 400);
  EXPECT_NE(bad.second.find("needs 2 values"), std::string::npos) << bad.second;
  EXPECT_EQ(Http(tcp, "POST", "/v1/predict", "not json").first, 400);
  EXPECT_EQ(Http(tcp, "GET", "/v1/predict", "").first, 405);
  EXPECT_EQ(Http(tcp, "GET", "/nowhere", "").first, 404);
  auto model = Http(ux, "GET", "/v1/model", "");
  EXPECT_EQ(model.first, 200);
  EXPECT_EQ(nlohmann::json::parse(model.second)["precision"], "int8");
  auto metrics = Http(tcp, "GET", "/metrics", "");
  EXPECT_NE(metrics.second.find("ronghe_edge_requests_total 8\n"), std::string::npos)
      << metrics.second;
  EXPECT_NE(metrics.second.find("ronghe_edge_errors_total 2\n"), std::string::npos)
      << metrics.second;
  ::close(tcp);
  ::close(ux);
  (*server)->Stop();
  EXPECT_FALSE(fs::exists(o.socket_path));
}

TEST(EdgeServerTest, RequestsDuringAVersionSwitchAreAllAnswered) {
  data::LoadedData d = Load("gretl_load");
  auto m1 = Trained(d, "gru", 1);
  auto m2 = Trained(d, "lstm", 1);
  std::shared_ptr<const Model> v1 = Export(*m1, d), v2 = Export(*m2, d, "int8");
  Node node;
  node.Set(v1, "1");
  ServerOptions o;
  o.port = 0;
  auto server = Server::Start(o, &node);
  ASSERT_TRUE(server.ok());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, saw2{0};
  std::vector<std::thread> clients;
  const std::string body = WindowJson(d, 5);
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      int fd = ConnectTcp((*server)->port());
      while (!stop) {
        auto r = Http(fd, "POST", "/v1/predict", body);
        if (r.first == 200) {
          ++ok;
          if (nlohmann::json::parse(r.second)["model_version"] == "2") ++saw2;
        } else {
          ++failed;
        }
      }
      ::close(fd);
    });
  }
  for (int i = 0; i < 200; ++i) {
    node.Set(i % 2 ? v1 : v2, i % 2 ? "1" : "2");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(ok.load(), 100);
  EXPECT_GT(saw2.load(), 0);
  EXPECT_LT(saw2.load(), ok.load());
}

TEST(EdgeServerTest, TheBinaryAnswersFromTheCommandLine) {
  data::LoadedData d = Load("gretl_load");
  auto m = Trained(d, "mlp", 1);
  ExportOptions o;
  o.model_version = "3.0.0";
  const std::string path = testing::TempDir() + "/cli.rhe";
  ASSERT_TRUE(WriteFileAtomic(path, ExportEdge(*m, Manifest(d), o, nullptr).value()).ok());
  std::vector<std::string> argv = {std::string(RONGHE_BINARY_DIR) + "/ronghe/cli/ronghe-edge",
                                   "predict", "-m", path};
  for (int t = 0; t < 24; ++t) {
    argv.push_back(std::to_string(2500 + 10 * t));
    argv.push_back("45");
  }
  Ran r = RunCapture(argv);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(std::stod(r.output), 500) << r.output;
  // A damaged file: the reason, exit 1.
  std::string bytes = ReadFile(path).value();
  bytes[bytes.size() / 2] ^= 1;
  ASSERT_TRUE(WriteFileAtomic(path, bytes).ok());
  Ran bad = RunCapture(argv);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("truncated or altered"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace ronghe::edge
