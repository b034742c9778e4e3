#include "ronghe/serve/perf.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/thread_pool.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/serve/job.h"
#include "ronghe/serve/kserve.h"

namespace ronghe::serve {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// The request as it goes on the wire: body, headers.
struct Wire {
  std::string body;
  httplib::Headers headers;
  std::string content_type = "application/json";
};

}  // namespace

Result<std::vector<LoadRow>> MeasureLoad(const LoadOptions& o) {
  if (o.url.rfind("http://", 0) != 0 || o.url.size() <= 7) {
    return InvalidArgument("--url: '" + o.url + "' is not http://HOST:PORT");
  }
  if (o.model.empty()) return InvalidArgument("--model: missing");
  if (o.concurrency.empty()) return InvalidArgument("--concurrency: no levels");
  for (int c : o.concurrency) {
    if (c < 1 || c > 4096) return InvalidArgument("--concurrency: each level is 1..4096");
  }
  if (o.duration_s <= 0) return InvalidArgument("--duration: must be positive");
  ASSIGN_OR_RETURN(std::string text, ReadFile(o.input));
  Wire w;
  if (o.binary) {
    size_t header = 0;
    auto b = ToBinaryRequest(text, /*binary_outputs=*/true, &header);
    if (!b.ok()) return InvalidArgument(o.input + ": " + b.status().message());
    w.body = std::move(b).value();
    w.headers.emplace("Inference-Header-Content-Length", std::to_string(header));
    w.content_type = "application/octet-stream";
  } else {
    auto msg = DecodeInferRequest(text);
    if (!msg.ok()) return InvalidArgument(o.input + ": " + msg.status().message());
    w.body = text;
  }
  const std::string path =
      "/v2/models/" + o.model + (o.version.empty() ? "" : "/versions/" + o.version) + "/infer";
  {
    httplib::Client probe(o.url);
    probe.set_read_timeout(60, 0);
    auto r = probe.Post(path.c_str(), w.headers, w.body, w.content_type.c_str());
    if (!r) return Unavailable(o.url + path + ": " + httplib::to_string(r.error()));
    if (r->status != 200) {
      return FailedPrecondition(o.url + path + ": HTTP " + std::to_string(r->status) + ": " +
                                r->body.substr(0, 300));
    }
  }
  std::vector<LoadRow> rows;
  for (int c : o.concurrency) {
    const auto start = Clock::now();
    const auto from = start + std::chrono::microseconds(static_cast<int64_t>(o.warmup_s * 1e6));
    const auto until = from + std::chrono::microseconds(static_cast<int64_t>(o.duration_s * 1e6));
    std::vector<std::vector<double>> lat(static_cast<size_t>(c));
    std::vector<int64_t> errors(static_cast<size_t>(c), 0);
    std::vector<std::thread> clients;
    for (int k = 0; k < c; ++k) {
      clients.emplace_back([&, k] {
        httplib::Client client(o.url);
        client.set_keep_alive(true);
        client.set_read_timeout(60, 0);
        client.set_tcp_nodelay(true);
        auto& mine = lat[static_cast<size_t>(k)];
        mine.reserve(1 << 16);
        while (true) {
          const auto t0 = Clock::now();
          if (t0 >= until) break;
          auto r = client.Post(path.c_str(), w.headers, w.body, w.content_type.c_str());
          const auto t1 = Clock::now();
          if (t0 < from || t1 > until) continue;  // warm-up, or past the window
          if (r && r->status == 200) {
            mine.push_back(Ms(t1 - t0));
          } else {
            ++errors[static_cast<size_t>(k)];
          }
        }
      });
    }
    for (auto& t : clients) t.join();
    LoadRow row;
    row.concurrency = c;
    std::vector<double> all;
    for (size_t k = 0; k < lat.size(); ++k) {
      all.insert(all.end(), lat[k].begin(), lat[k].end());
      row.errors += errors[k];
    }
    row.requests = static_cast<int64_t>(all.size());
    row.requests_per_s = static_cast<double>(all.size()) / o.duration_s;
    row.p50_ms = Percentile(all, 0.50);
    row.p99_ms = Percentile(all, 0.99);
    rows.push_back(row);
  }
  return rows;
}

Result<std::vector<ForwardRow>> MeasureForward(const ForwardOptions& o) {
  if (o.repo.empty() || o.model.empty()) return InvalidArgument("--repo and --model are required");
  if (o.batch_sizes.empty()) return InvalidArgument("--batch-sizes: none given");
  for (int64_t b : o.batch_sizes) {
    if (b < 1 || b > 65536) return InvalidArgument("--batch-sizes: each is 1..65536");
  }
  if (o.threads < 1) return InvalidArgument("--threads: must be >= 1");
  const fs::path dir = fs::path(o.repo) / o.model;
  std::string version = o.version;
  if (version.empty()) {
    int64_t best = -1;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit) && n.size() < 18 &&
          fs::exists(e.path() / "model.rhm")) {
        best = std::max<int64_t>(best, std::stoll(n));
      }
    }
    if (best < 0) {
      return NotFound(dir.string() +
                      ": no version directory with a model.rhm (a route such as "
                      "a cascade has no model of its own)");
    }
    version = std::to_string(best);
  }
  const std::string artifact = (dir / version / "model.rhm").string();
  const int instances = o.instances > 0 ? o.instances : DefaultThreads();
  // Before anything runs in parallel: LibTorch ignores a later change of its intra-op threads
  // once its pool has started (loading a model runs it), and each instance would then run on
  // every core, as `ronghe serve` (which sets them first) does not.
  SetComputeThreads(o.threads);
  std::vector<std::unique_ptr<nn::Model>> models;
  std::vector<int64_t> input_shape;
  for (int i = 0; i < instances; ++i) {
    ASSIGN_OR_RETURN(nn::LoadedArtifact a, nn::LoadArtifact(artifact));
    if (i == 0) {
      for (const auto& d : a.manifest["model"]["input_shape"])
        input_shape.push_back(d.get<int64_t>());
    }
    models.push_back(std::move(a.model));
  }
  std::vector<ForwardRow> rows;
  for (int64_t b : o.batch_sizes) {
    std::vector<int64_t> shape = {b};
    shape.insert(shape.end(), input_shape.begin(), input_shape.end());
    std::atomic<int64_t> batches{0};
    std::atomic<double> busy_ms{0};
    std::vector<std::thread> workers;
    const auto start = Clock::now();
    const auto from = start + std::chrono::milliseconds(300);
    const auto until = from + std::chrono::microseconds(static_cast<int64_t>(o.duration_s * 1e6));
    for (int i = 0; i < instances; ++i) {
      workers.emplace_back([&, i] {
        c10::InferenceMode guard;
        at::Tensor x = at::randn(shape);
        int64_t mine = 0;
        double ms = 0;
        while (true) {
          const auto t0 = Clock::now();
          if (t0 >= until) break;
          at::Tensor y = models[static_cast<size_t>(i)]->Forward(x);
          const auto t1 = Clock::now();
          if (t0 >= from && t1 <= until) {
            ++mine;
            ms += Ms(t1 - t0);
          }
        }
        batches += mine;
        double cur = busy_ms.load();
        while (!busy_ms.compare_exchange_weak(cur, cur + ms)) {
        }
      });
    }
    for (auto& t : workers) t.join();
    ForwardRow row;
    row.batch_size = b;
    row.rows_per_s = static_cast<double>(batches.load() * b) / o.duration_s;
    row.batch_ms = batches.load() ? busy_ms.load() / static_cast<double>(batches.load()) : 0;
    rows.push_back(row);
  }
  return rows;
}

json ToJson(const LoadRow& r) {
  return {{"concurrency", r.concurrency}, {"requests_per_s", r.requests_per_s},
          {"p50_ms", r.p50_ms},           {"p99_ms", r.p99_ms},
          {"errors", r.errors},           {"requests", r.requests}};
}

json ToJson(const ForwardRow& r) {
  return {{"batch_size", r.batch_size}, {"rows_per_s", r.rows_per_s}, {"batch_ms", r.batch_ms}};
}

}  // namespace ronghe::serve
