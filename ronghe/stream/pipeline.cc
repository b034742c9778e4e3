#include "ronghe/stream/pipeline.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <queue>
#include <set>
#include <thread>

#include "ronghe/base/mutex.h"
#include "ronghe/serve/repository.h"
#include "ronghe/store/stream_store.h"
#include "ronghe/stream/novelty.h"

namespace ronghe::stream {

namespace {

using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string HostName() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// Milliseconds in log-spaced buckets (5% apart from 20 us to ~200 s): quantiles for the line's
// p99 and for judging a new version, counted without a lock.
class LatencyHist {
 public:
  static constexpr int kBuckets = 340;
  void Add(double ms) {
    int b = ms <= kBase ? 0 : static_cast<int>(std::log(ms / kBase) / std::log(kFactor)) + 1;
    c_[std::min(b, kBuckets - 1)].fetch_add(1, std::memory_order_relaxed);
  }
  double Quantile(double q) const {
    int64_t total = 0;
    int64_t counts[kBuckets];
    for (int i = 0; i < kBuckets; ++i) total += counts[i] = c_[i].load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const int64_t want = static_cast<int64_t>(std::ceil(q * static_cast<double>(total)));
    int64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[i];
      if (seen >= want) return kBase * std::pow(kFactor, i);  // the bucket's upper bound
    }
    return kBase * std::pow(kFactor, kBuckets - 1);
  }
  void Reset() {
    for (auto& c : c_) c.store(0, std::memory_order_relaxed);
  }

 private:
  static constexpr double kBase = 0.02, kFactor = 1.05;
  std::atomic<int64_t> c_[kBuckets] = {};
};

// How frames become model inputs, from the served version's manifest.
struct Prep {
  int64_t height = 0, width = 0;
  double scale = 1.0 / 255, mean = 0, std = 1;
};

Result<Prep> PrepOf(const serve::ServedVersion& v) {
  const auto& shape = v.signature().input_shape();
  if (shape.size() != 3 || shape[0] != 1) {
    return InvalidArgument("model " + v.model() + " takes input of shape other than [1, H, W] " +
                           "(one grey image): a line classifies camera frames");
  }
  Prep p;
  p.height = shape[1];
  p.width = shape[2];
  const auto& pre = v.manifest().value("preprocessing", nlohmann::json::object());
  if (pre.value("kind", "") == "image") {
    p.scale = pre.value("scale", 1.0 / 255);
    p.mean = pre.value("mean", 0.0);
    p.std = pre.value("std", 1.0);
    if (!(p.std > 0)) p.std = 1;
  }
  return p;
}

struct Slot {
  int64_t seq = 0;
  double frame_time = 0;
  int64_t capture_ns = 0;
  int64_t truth = -1;
  std::vector<float> input;    // the model's input
  std::vector<uint8_t> small;  // the same at model size as 0-255 grey (for review)
};

// Region of interest, then to the model's size: an area average when shrinking by 2x or more
// (camera frames to a classifier's input; sampling alone would alias), bilinear otherwise.
void Preprocess(const RawFrame& raw, const std::vector<int64_t>& roi, const Prep& p, Slot* s) {
  int64_t x0 = 0, y0 = 0, w = raw.width, h = raw.height;
  if (roi.size() == 4) {
    x0 = std::clamp<int64_t>(roi[0], 0, raw.width - 1);
    y0 = std::clamp<int64_t>(roi[1], 0, raw.height - 1);
    w = std::clamp<int64_t>(roi[2], 1, raw.width - x0);
    h = std::clamp<int64_t>(roi[3], 1, raw.height - y0);
  }
  const size_t n = static_cast<size_t>(p.height * p.width);
  s->input.resize(n);
  s->small.resize(n);
  const uint8_t* src = raw.grey.data();
  const double sx = static_cast<double>(w) / static_cast<double>(p.width);
  const double sy = static_cast<double>(h) / static_cast<double>(p.height);
  for (int64_t oy = 0; oy < p.height; ++oy) {
    for (int64_t ox = 0; ox < p.width; ++ox) {
      double v;
      if (sx >= 2 || sy >= 2) {
        const int64_t ax = x0 + static_cast<int64_t>(static_cast<double>(ox) * sx);
        const int64_t bx =
            std::max(ax + 1, x0 + static_cast<int64_t>(static_cast<double>(ox + 1) * sx));
        const int64_t ay = y0 + static_cast<int64_t>(static_cast<double>(oy) * sy);
        const int64_t by =
            std::max(ay + 1, y0 + static_cast<int64_t>(static_cast<double>(oy + 1) * sy));
        int64_t sum = 0;
        for (int64_t y = ay; y < by; ++y) {
          const uint8_t* row = src + y * raw.width;
          for (int64_t x = ax; x < bx; ++x) sum += row[x];
        }
        v = static_cast<double>(sum) / static_cast<double>((bx - ax) * (by - ay));
      } else {
        const double fx =
            std::clamp((static_cast<double>(ox) + 0.5) * sx - 0.5, 0.0, static_cast<double>(w - 1));
        const double fy =
            std::clamp((static_cast<double>(oy) + 0.5) * sy - 0.5, 0.0, static_cast<double>(h - 1));
        const int64_t ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
        const int64_t jx = std::min(ix + 1, w - 1), jy = std::min(iy + 1, h - 1);
        const double ax = fx - static_cast<double>(ix), ay = fy - static_cast<double>(iy);
        auto at = [&](int64_t x, int64_t y) {
          return static_cast<double>(src[(y0 + y) * raw.width + x0 + x]);
        };
        v = (1 - ay) * ((1 - ax) * at(ix, iy) + ax * at(jx, iy)) +
            ay * ((1 - ax) * at(ix, jy) + ax * at(jx, jy));
      }
      const size_t i = static_cast<size_t>(oy * p.width + ox);
      s->small[i] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0)));
      s->input[i] = static_cast<float>((v * p.scale - p.mean) / p.std);
    }
  }
}

struct Camera {
  SourceSpec spec;
  std::unique_ptr<FrameSource> src;
  // The queue: a ring of `depth` slots, guarded by Impl::mu.
  std::vector<Slot> ring;
  size_t head = 0, count = 0;
  std::string state = "starting", detail;  // guarded by Impl::mu
  std::atomic<int64_t> in{0}, decided{0}, dropped{0}, errors{0}, flagged{0};
  serve::Histogram latency;  // capture to decision, seconds (Prometheus)
  LatencyHist latency_ms;
  RawFrame raw;  // the capture thread's
  Slot scratch;  // the capture thread's
};

struct Current {
  std::shared_ptr<serve::ServedVersion> v;
  int64_t version = 0;
  double threshold = 0;
  NoveltyCalibration novelty;
  std::vector<std::string> classes;
  Prep prep;
};

struct Taken {
  Camera* cam = nullptr;
  Slot slot;
};

}  // namespace

struct Pipeline::Impl {
  PipelineOptions o;
  std::vector<std::unique_ptr<Camera>> cams;
  std::string host = HostName();

  Mutex mu;  // the queues
  CondVar work_cv;
  int64_t queued GUARDED_BY(mu) = 0;
  size_t rr GUARDED_BY(mu) = 0;
  bool draining GUARDED_BY(mu) = false;
  bool capture_done GUARDED_BY(mu) = false;

  Mutex stop_mu;
  CondVar stop_cv;
  bool stopping GUARDED_BY(stop_mu) = false;
  std::atomic<bool> stop{false};

  Mutex cur_mu;
  std::shared_ptr<const Current> current GUARDED_BY(cur_mu);
  std::shared_ptr<const Current> previous GUARDED_BY(cur_mu);
  bool pinned GUARDED_BY(cur_mu) = false;
  std::set<int64_t> rolled_back GUARDED_BY(cur_mu);
  std::set<int64_t> refused GUARDED_BY(cur_mu);  // versions that cannot run here
  // Judging a new version against the one before.
  bool judging GUARDED_BY(cur_mu) = false;
  double old_rate GUARDED_BY(cur_mu) = 0, old_p99 GUARDED_BY(cur_mu) = 0;
  std::atomic<int64_t> cur_decided{0}, cur_flagged{0};
  LatencyHist cur_latency;

  Mutex sink_mu;
  std::vector<store::StreamEvent> events GUARDED_BY(sink_mu);
  std::vector<store::ReviewFrame> review GUARDED_BY(sink_mu);

  std::atomic<int64_t> batches{0}, mixed_batches{0};
  LatencyHist all_latency;

  std::vector<std::thread> capture_threads, infer_threads;
  Mutex live_mu;
  std::vector<std::thread> live_threads GUARDED_BY(live_mu);
  std::thread follower, flusher;
  bool stopped = false;

  std::shared_ptr<const Current> Cur() {
    MutexLock l(&cur_mu);
    return current;
  }

  Result<std::shared_ptr<const Current>> Prepare(std::shared_ptr<serve::ServedVersion> v) {
    auto c = std::make_shared<Current>();
    ASSIGN_OR_RETURN(c->prep, PrepOf(*v));
    ASSIGN_OR_RETURN(c->novelty, CalibrateNovelty(*v, o.home, o.false_alarm_rate,
                                                  o.calibration_frames, o.novelty_score));
    c->threshold = c->novelty.threshold;
    c->version = v->version();
    c->classes = v->manifest().value("classes", std::vector<std::string>{});
    c->v = std::move(v);
    return std::shared_ptr<const Current>(std::move(c));
  }

  // The highest loaded version this line has not rolled back.
  Result<std::shared_ptr<serve::ServedVersion>> Target() {
    ASSIGN_OR_RETURN(auto entry, o.repo->Entry(o.model));
    MutexLock l(&cur_mu);
    for (auto it = entry->versions.rbegin(); it != entry->versions.rend(); ++it) {
      if (!rolled_back.count(it->first) && !refused.count(it->first)) return it->second;
    }
    return FailedPrecondition("model " + o.model + ": every loaded version was rolled back here");
  }

  int64_t OldestLocked() REQUIRES(mu) {
    int64_t oldest = INT64_MAX;
    for (auto& c : cams) {
      if (c->count) oldest = std::min(oldest, c->ring[c->head].capture_ns);
    }
    return oldest;
  }

  // Into the camera's queue; the oldest frame makes room when it is full.
  void Push(Camera* c) {
    c->scratch.capture_ns = NowNs();
    MutexLock l(&mu);
    c->in.fetch_add(1, std::memory_order_relaxed);
    if (c->count == c->ring.size()) {
      c->head = (c->head + 1) % c->ring.size();
      --c->count;
      --queued;
      c->dropped.fetch_add(1, std::memory_order_relaxed);
    }
    std::swap(c->ring[(c->head + c->count) % c->ring.size()], c->scratch);
    ++c->count;
    ++queued;
    if (queued >= o.max_batch || queued == 1) work_cv.NotifyAll();
  }

  void SetState(Camera* c, const std::string& state, const std::string& detail) {
    MutexLock l(&mu);
    c->state = state;
    c->detail = detail;
    if (!detail.empty()) {
      std::fprintf(stderr, "ronghe stream: line %s camera %s %s: %s\n", o.line.c_str(),
                   c->spec.name.c_str(), state.c_str(), detail.c_str());
    }
  }

  // Reads, preprocesses and queues one frame; false when the camera is done.
  bool CaptureOne(Camera* c) {
    auto got = c->src->Read(&c->raw);
    if (!got.ok()) {
      SetState(c, "failed", got.status().message());
      return false;
    }
    if (!*got) {
      SetState(c, "ended", "");
      return false;
    }
    auto cur = Cur();
    c->scratch.seq = c->raw.seq;
    c->scratch.frame_time = c->raw.frame_time;
    c->scratch.truth = c->raw.truth;
    Preprocess(c->raw, c->spec.roi, cur->prep, &c->scratch);
    Push(c);
    return true;
  }

  bool Open(Camera* c) {
    auto s = c->spec.open();
    if (!s.ok()) {
      SetState(c, "failed", s.status().message());
      return false;
    }
    c->src = std::move(s).value();
    SetState(c, "running", "");
    return true;
  }

  // Paced cameras: each due at its own rate; one thread serves many.
  void CaptureLoop(std::vector<Camera*> mine) {
    using Due = std::pair<int64_t, size_t>;
    std::priority_queue<Due, std::vector<Due>, std::greater<Due>> heap;
    const int64_t start = NowNs();
    for (size_t i = 0; i < mine.size(); ++i) {
      if (Open(mine[i])) {
        if (mine[i]->src->live()) {
          MutexLock l(&live_mu);
          live_threads.emplace_back([this, c = mine[i]] { LiveLoop(c); });
          continue;
        }
        // Spread the cameras' first frames over one period, as real cameras are not in phase.
        const double period = 1e9 / std::max(0.01, mine[i]->src->fps());
        heap.push({start + static_cast<int64_t>(period * static_cast<double>(i) /
                                                static_cast<double>(mine.size())),
                   i});
      }
    }
    while (!heap.empty() && !stop.load()) {
      auto [due, i] = heap.top();
      heap.pop();
      {
        MutexLock l(&stop_mu);
        while (!stopping && NowNs() < due) {
          stop_cv.WaitFor(&stop_mu, std::chrono::nanoseconds(due - NowNs()));
        }
        if (stopping) break;
      }
      Camera* c = mine[i];
      if (!CaptureOne(c)) continue;
      const int64_t period = static_cast<int64_t>(1e9 / std::max(0.01, c->src->fps()));
      int64_t next = due + period;
      // A capture thread more than a second behind skips ahead instead of bursting: a camera
      // does not deliver the frames it was not asked for.
      if (next < NowNs() - 1000000000) next = NowNs();
      heap.push({next, i});
    }
  }

  void LiveLoop(Camera* c) {
    while (!stop.load() && CaptureOne(c)) {
    }
  }

  void InferLoop() {
    const size_t row = static_cast<size_t>(Cur()->prep.height * Cur()->prep.width);
    std::vector<float> in(static_cast<size_t>(o.max_batch) * row), out;
    std::vector<Taken> taken(static_cast<size_t>(o.max_batch));
    std::vector<store::StreamEvent> events;
    std::vector<store::ReviewFrame> review;
    std::vector<double> scratch;
    while (true) {
      size_t n = 0;
      {
        MutexLock l(&mu);
        while (true) {
          if (queued >= o.max_batch) break;
          if (queued > 0) {
            const int64_t ready_at = OldestLocked() + o.max_wait_us * 1000;
            if (draining || NowNs() >= ready_at) break;
            work_cv.WaitFor(&mu, std::chrono::nanoseconds(ready_at - NowNs()));
            continue;
          }
          if (draining && capture_done) return;
          work_cv.WaitFor(&mu, std::chrono::milliseconds(100));
        }
        // One frame per camera per pass, starting where the last batch stopped: every camera
        // gets its turn however busy the others are.
        const size_t m = cams.size();
        while (n < static_cast<size_t>(o.max_batch) && queued > 0) {
          for (size_t k = 0; k < m && n < static_cast<size_t>(o.max_batch); ++k) {
            Camera* c = cams[(rr + k) % m].get();
            if (!c->count) continue;
            taken[n].cam = c;
            std::swap(taken[n].slot, c->ring[c->head]);
            c->head = (c->head + 1) % c->ring.size();
            --c->count;
            --queued;
            ++n;
          }
        }
        rr = (rr + 1) % std::max<size_t>(1, m);
      }
      RunBatch(taken.data(), n, row, &in, &out, &events, &review, &scratch);
    }
  }

  void RunBatch(Taken* taken, size_t n, size_t row, std::vector<float>* in, std::vector<float>* out,
                std::vector<store::StreamEvent>* events, std::vector<store::ReviewFrame>* review,
                std::vector<double>* scratch) {
    auto cur = Cur();
    bool mixed = false;
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(in->data() + i * row, taken[i].slot.input.data(), row * sizeof(float));
      mixed = mixed || taken[i].cam != taken[0].cam;
    }
    batches.fetch_add(1, std::memory_order_relaxed);
    if (mixed) mixed_batches.fetch_add(1, std::memory_order_relaxed);
    serve::InferRequest r;
    r.input = in->data();
    r.rows = static_cast<int64_t>(n);
    r.row_elements = static_cast<int64_t>(row);
    r.output = out;
    int64_t width = 0;
    Status st = cur->v->Run(r, &width);
    if (o.slow_model_ms > 0) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(static_cast<int64_t>(o.slow_model_ms * 1000)));
    }
    if (!st.ok()) {
      // The frames were taken and not decided: dropped, as errors, and said once per batch.
      std::fprintf(stderr, "ronghe stream: line %s: a batch of %zu failed: %s\n", o.line.c_str(), n,
                   st.message().c_str());
      for (size_t i = 0; i < n; ++i) {
        taken[i].cam->errors.fetch_add(1, std::memory_order_relaxed);
        taken[i].cam->dropped.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    const int64_t now = NowNs();
    const double unix_now = UnixNow();
    events->clear();
    review->clear();
    // Each row: the logits, then (served with embeddings) the embedding.
    const int64_t classes = cur->v->outputs();
    for (size_t i = 0; i < n; ++i) {
      const float* logits = out->data() + i * static_cast<size_t>(width);
      int64_t best = 0;
      for (int64_t k = 1; k < classes; ++k) best = logits[k] > logits[best] ? k : best;
      double z = 0;
      for (int64_t k = 0; k < classes; ++k) {
        z += std::exp(static_cast<double>(logits[k] - logits[best]));
      }
      const double confidence = 1 / z;
      const double score = cur->novelty.score == "energy"
                               ? Energy(logits, classes)
                               : cur->novelty.gaussians.Distance(logits + classes, scratch);
      const bool flagged = score > cur->threshold;
      Camera* c = taken[i].cam;
      const Slot& s = taken[i].slot;
      const double ms = static_cast<double>(now - s.capture_ns) / 1e6;
      const std::string cls = static_cast<size_t>(best) < cur->classes.size()
                                  ? cur->classes[static_cast<size_t>(best)]
                                  : std::to_string(best);
      if (o.store) {
        events->push_back({o.line, c->spec.name, s.seq, s.frame_time, cls, confidence, score,
                           flagged, ms, cur->version, unix_now});
        if (flagged) {
          store::ReviewFrame f;
          f.model = o.model;
          f.line = o.line;
          f.source = c->spec.name;
          f.seq = s.seq;
          f.frame_time = s.frame_time;
          f.height = cur->prep.height;
          f.width = cur->prep.width;
          f.pixels.assign(reinterpret_cast<const char*>(s.small.data()), s.small.size());
          f.predicted = cls;
          f.confidence = confidence;
          f.score = score;
          f.model_version = cur->version;
          if (s.truth >= 0 && static_cast<size_t>(s.truth) < c->spec.truth_names.size()) {
            f.truth = c->spec.truth_names[static_cast<size_t>(s.truth)];
          }
          f.flagged_at = unix_now;
          review->push_back(std::move(f));
        }
      }
      c->latency.Observe(ms / 1000);
      c->latency_ms.Add(ms);
      all_latency.Add(ms);
      cur_latency.Add(ms);
      if (flagged) {
        c->flagged.fetch_add(1, std::memory_order_relaxed);
        cur_flagged.fetch_add(1, std::memory_order_relaxed);
      }
      cur_decided.fetch_add(1, std::memory_order_relaxed);
    }
    if (o.store) {
      MutexLock l(&sink_mu);
      this->events.insert(this->events.end(), std::make_move_iterator(events->begin()),
                          std::make_move_iterator(events->end()));
      this->review.insert(this->review.end(), std::make_move_iterator(review->begin()),
                          std::make_move_iterator(review->end()));
    }
    // Counted last: a frame is decided once its record is on its way to the store.
    for (size_t i = 0; i < n; ++i) taken[i].cam->decided.fetch_add(1, std::memory_order_relaxed);
  }

  // Follows the repository's versions, and judges a new one against the one before.
  void FollowLoop() {
    while (true) {
      {
        MutexLock l(&stop_mu);
        if (stopping) return;
        stop_cv.WaitFor(&stop_mu,
                        std::chrono::milliseconds(static_cast<int64_t>(o.follow_every_s * 1000)));
        if (stopping) return;
      }
      Judge();
      auto target = Target();
      if (!target.ok()) continue;
      auto cur = Cur();
      if ((*target)->version() == cur->version) continue;
      auto next = Prepare(*target);
      if (!next.ok() || (*next)->prep.height != cur->prep.height ||
          (*next)->prep.width != cur->prep.width) {
        std::fprintf(stderr, "ronghe stream: line %s: version %lld of %s cannot run here: %s\n",
                     o.line.c_str(), static_cast<long long>((*target)->version()), o.model.c_str(),
                     next.ok() ? "another input size" : next.status().message().c_str());
        MutexLock l(&cur_mu);
        refused.insert((*target)->version());
        continue;
      }
      MutexLock l(&cur_mu);
      const int64_t d = cur_decided.exchange(0), f = cur_flagged.exchange(0);
      old_rate = d ? static_cast<double>(f) / static_cast<double>(d) : 0;
      old_p99 = cur_latency.Quantile(0.99);
      cur_latency.Reset();
      judging = (*next)->version > cur->version;
      previous = current;
      current = *next;
      pinned = false;
      std::fprintf(stderr, "ronghe stream: line %s now runs %s version %lld\n", o.line.c_str(),
                   o.model.c_str(), static_cast<long long>(current->version));
    }
  }

  void Judge() {
    MutexLock l(&cur_mu);
    if (!judging || cur_decided.load() < o.rollback_window || !previous) return;
    judging = false;
    const double d = static_cast<double>(cur_decided.load());
    const double rate = static_cast<double>(cur_flagged.load()) / d;
    const double p99 = cur_latency.Quantile(0.99);
    std::string why;
    char buf[200];
    if (rate > std::max(o.max_novelty_ratio * old_rate, old_rate + 0.05)) {
      std::snprintf(buf, sizeof buf, "novelty rate %.3f against %.3f on version %lld", rate,
                    old_rate, static_cast<long long>(previous->version));
      why = buf;
    } else if (old_p99 > 0 && p99 > o.max_latency_ratio * old_p99 + 20) {
      std::snprintf(buf, sizeof buf, "p99 %.1f ms against %.1f ms on version %lld", p99, old_p99,
                    static_cast<long long>(previous->version));
      why = buf;
    }
    if (why.empty()) {
      std::fprintf(stderr,
                   "ronghe stream: line %s keeps version %lld: novelty rate %.3f against %.3f, p99 "
                   "%.1f ms against %.1f ms on version %lld\n",
                   o.line.c_str(), static_cast<long long>(current->version), rate, old_rate, p99,
                   old_p99, static_cast<long long>(previous->version));
      return;
    }
    std::fprintf(stderr, "ronghe stream: line %s rolls back from version %lld: %s\n",
                 o.line.c_str(), static_cast<long long>(current->version), why.c_str());
    rolled_back.insert(current->version);
    if (o.store) (void)o.store->AddRollback(o.line, o.model, current->version, why);
    current = previous;
    pinned = true;
    cur_decided = 0;
    cur_flagged = 0;
    cur_latency.Reset();
  }

  void Flush(const std::string& state) {
    if (!o.store) return;
    std::vector<store::StreamEvent> ev;
    std::vector<store::ReviewFrame> rv;
    {
      MutexLock l(&sink_mu);
      ev.swap(events);
      rv.swap(review);
    }
    Status st = o.store->AddEvents(ev);
    if (st.ok()) st = o.store->AddReview(&rv);
    if (!st.ok()) {
      std::fprintf(stderr, "ronghe stream: line %s: the store refused %zu events: %s\n",
                   o.line.c_str(), ev.size(), st.message().c_str());
    }
    LineStats s = Snapshot();
    store::LineState x;
    x.line = o.line;
    x.pid = ::getpid();
    x.host = host;
    x.model = o.model;
    x.version = s.version;
    x.pinned = s.pinned;
    x.frames_in = s.frames_in;
    x.frames_decided = s.decided;
    x.frames_dropped = s.dropped;
    x.novelty_rate = s.novelty_rate;
    x.p99_ms = s.p99_ms;
    x.state = state;
    int failed = 0;
    for (const auto& c : s.sources) failed += c.state == "failed";
    if (failed) x.detail = std::to_string(failed) + " camera(s) failed";
    (void)o.store->PutLine(x);
  }

  void FlushLoop() {
    while (true) {
      {
        MutexLock l(&stop_mu);
        if (stopping) return;
        stop_cv.WaitFor(&stop_mu,
                        std::chrono::milliseconds(static_cast<int64_t>(o.flush_every_s * 1000)));
        if (stopping) return;
      }
      Flush("running");
    }
  }

  LineStats Snapshot() {
    LineStats s;
    {
      MutexLock l(&mu);
      for (auto& c : cams) {
        SourceStats x;
        x.name = c->spec.name;
        x.state = c->state;
        x.detail = c->detail;
        x.frames_in = c->in.load();
        x.decided = c->decided.load();
        x.dropped = c->dropped.load();
        x.dropped_errors = c->errors.load();
        x.flagged = c->flagged.load();
        x.queued = static_cast<int64_t>(c->count);
        x.p99_ms = c->latency_ms.Quantile(0.99);
        s.frames_in += x.frames_in;
        s.decided += x.decided;
        s.dropped += x.dropped;
        s.flagged += x.flagged;
        s.queued += x.queued;
        s.sources.push_back(std::move(x));
      }
    }
    s.batches = batches.load();
    s.mixed_batches = mixed_batches.load();
    s.p99_ms = all_latency.Quantile(0.99);
    MutexLock l(&cur_mu);
    if (current) {
      s.version = current->version;
      s.threshold = current->threshold;
      s.classes = current->classes;
    }
    s.pinned = pinned;
    const int64_t d = cur_decided.load();
    s.novelty_rate = d ? static_cast<double>(cur_flagged.load()) / static_cast<double>(d) : 0;
    return s;
  }
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pipeline::~Pipeline() { Stop(); }

Result<std::unique_ptr<Pipeline>> Pipeline::Start(const PipelineOptions& o,
                                                  std::vector<SourceSpec> sources) {
  if (!o.repo) return InvalidArgument("stream: no model repository");
  if (o.model.empty()) return InvalidArgument("stream: no model named");
  if (o.max_batch < 1) return InvalidArgument("stream: batching.max_batch must be >= 1");
  if (o.queue_depth < 1) return InvalidArgument("stream: queue.depth must be >= 1");
  if (sources.empty()) return InvalidArgument("stream: a line needs at least one camera");
  auto impl = std::make_unique<Impl>();
  impl->o = o;
  impl->o.capture_threads = std::max(1, o.capture_threads);
  impl->o.inference_threads = std::max(1, o.inference_threads);
  std::set<std::string> names;
  for (auto& s : sources) {
    if (!names.insert(s.name).second) return InvalidArgument("stream: two cameras named " + s.name);
    auto c = std::make_unique<Camera>();
    c->spec = std::move(s);
    c->ring.resize(static_cast<size_t>(o.queue_depth));
    impl->cams.push_back(std::move(c));
  }
  if (o.store) {
    ASSIGN_OR_RETURN(auto rb, o.store->RolledBack(o.line, o.model));
    MutexLock l(&impl->cur_mu);
    impl->rolled_back.insert(rb.begin(), rb.end());
  }
  ASSIGN_OR_RETURN(auto target, impl->Target());
  ASSIGN_OR_RETURN(auto first, impl->Prepare(target));
  {
    MutexLock l(&impl->cur_mu);
    impl->current = first;
    ASSIGN_OR_RETURN(auto entry, o.repo->Entry(o.model));
    // Started on an older version than the repository's newest: a rollback this line recorded.
    impl->pinned = !entry->versions.empty() && entry->versions.rbegin()->first != first->version;
  }
  Impl* p = impl.get();
  // Cameras are dealt to the capture threads; each opens its own (an unreachable URL fails that
  // camera alone) and hands a live one to a thread of its own.
  std::vector<std::vector<Camera*>> groups(static_cast<size_t>(p->o.capture_threads));
  for (size_t i = 0; i < p->cams.size(); ++i) groups[i % groups.size()].push_back(p->cams[i].get());
  for (auto& g : groups) p->capture_threads.emplace_back([p, g] { p->CaptureLoop(g); });
  for (int i = 0; i < p->o.inference_threads; ++i) {
    p->infer_threads.emplace_back([p] { p->InferLoop(); });
  }
  p->follower = std::thread([p] { p->FollowLoop(); });
  p->flusher = std::thread([p] { p->FlushLoop(); });
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

void Pipeline::Stop() {
  Impl* p = impl_.get();
  if (!p || p->stopped) return;
  p->stopped = true;
  // 1. No new frames: the cameras stop (a live one ends its blocking read within its timeout).
  p->stop = true;
  {
    MutexLock l(&p->stop_mu);
    p->stopping = true;
    p->stop_cv.NotifyAll();
  }
  for (auto& t : p->capture_threads) t.join();
  {
    MutexLock l(&p->live_mu);
    for (auto& t : p->live_threads) t.join();
  }
  // 2. Every queued frame is decided.
  {
    MutexLock l(&p->mu);
    p->capture_done = true;
    p->draining = true;
    p->work_cv.NotifyAll();
  }
  for (auto& t : p->infer_threads) t.join();
  p->follower.join();
  p->flusher.join();
  // 3. The rest to the store.
  p->Flush("stopped");
}

bool Pipeline::WaitSourcesDone(double timeout_s) {
  const auto until =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (true) {  // checked at least once: a zero timeout asks "are they done now?"
    bool done = true;
    {
      MutexLock l(&impl_->mu);
      for (auto& c : impl_->cams) done = done && (c->state == "ended" || c->state == "failed");
    }
    if (done) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

LineStats Pipeline::Stats() const { return impl_->Snapshot(); }

std::string Pipeline::PrometheusText() const {
  Impl* p = impl_.get();
  LineStats s = p->Snapshot();
  std::string out;
  char buf[512];
  auto counter = [&](const char* name, const char* help) {
    std::snprintf(buf, sizeof buf, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    out += buf;
  };
  const std::string line = p->o.line;
  counter("ronghe_stream_frames_in_total", "Frames captured, per camera.");
  for (const auto& c : s.sources) {
    std::snprintf(buf, sizeof buf,
                  "ronghe_stream_frames_in_total{line=\"%s\",source=\"%s\"} %lld\n", line.c_str(),
                  c.name.c_str(), static_cast<long long>(c.frames_in));
    out += buf;
  }
  counter("ronghe_stream_frames_decided_total", "Frames classified, per camera.");
  for (const auto& c : s.sources) {
    std::snprintf(buf, sizeof buf,
                  "ronghe_stream_frames_decided_total{line=\"%s\",source=\"%s\"} %lld\n",
                  line.c_str(), c.name.c_str(), static_cast<long long>(c.decided));
    out += buf;
  }
  counter("ronghe_stream_frames_dropped_total",
          "Frames dropped, per camera and reason (queue: the oldest made room; error: its batch "
          "failed).");
  for (const auto& c : s.sources) {
    std::snprintf(buf, sizeof buf,
                  "ronghe_stream_frames_dropped_total{line=\"%s\",source=\"%s\",reason=\"queue\"} "
                  "%lld\nronghe_stream_frames_dropped_total{line=\"%s\",source=\"%s\",reason="
                  "\"error\"} %lld\n",
                  line.c_str(), c.name.c_str(),
                  static_cast<long long>(c.dropped - c.dropped_errors), line.c_str(),
                  c.name.c_str(), static_cast<long long>(c.dropped_errors));
    out += buf;
  }
  counter("ronghe_stream_frames_flagged_total", "Frames flagged as novel, per camera.");
  for (const auto& c : s.sources) {
    std::snprintf(buf, sizeof buf,
                  "ronghe_stream_frames_flagged_total{line=\"%s\",source=\"%s\"} %lld\n",
                  line.c_str(), c.name.c_str(), static_cast<long long>(c.flagged));
    out += buf;
  }
  out +=
      "# HELP ronghe_stream_camera_up 1 while the camera delivers, 0 once it ended or failed.\n"
      "# TYPE ronghe_stream_camera_up gauge\n";
  for (const auto& c : s.sources) {
    std::snprintf(buf, sizeof buf, "ronghe_stream_camera_up{line=\"%s\",source=\"%s\"} %d\n",
                  line.c_str(), c.name.c_str(), c.state == "running" ? 1 : 0);
    out += buf;
  }
  out +=
      "# HELP ronghe_stream_capture_to_decision_seconds Capture to decision, per camera.\n"
      "# TYPE ronghe_stream_capture_to_decision_seconds histogram\n";
  const auto& bounds = serve::Histogram::Bounds();
  for (size_t i = 0; i < p->cams.size(); ++i) {
    const Camera& c = *p->cams[i];
    const auto counts = c.latency.Counts();
    for (size_t b = 0; b < counts.size(); ++b) {
      if (b < bounds.size()) {
        std::snprintf(buf, sizeof buf,
                      "ronghe_stream_capture_to_decision_seconds_bucket{line=\"%s\",source=\"%s\","
                      "le=\"%g\"} %lld\n",
                      line.c_str(), c.spec.name.c_str(), bounds[b],
                      static_cast<long long>(counts[b]));
      } else {
        std::snprintf(buf, sizeof buf,
                      "ronghe_stream_capture_to_decision_seconds_bucket{line=\"%s\",source=\"%s\","
                      "le=\"+Inf\"} %lld\n",
                      line.c_str(), c.spec.name.c_str(), static_cast<long long>(counts[b]));
      }
      out += buf;
    }
    std::snprintf(
        buf, sizeof buf,
        "ronghe_stream_capture_to_decision_seconds_sum{line=\"%s\",source=\"%s\"} %g\n"
        "ronghe_stream_capture_to_decision_seconds_count{line=\"%s\",source=\"%s\"} %lld\n",
        line.c_str(), c.spec.name.c_str(), c.latency.Sum(), line.c_str(), c.spec.name.c_str(),
        static_cast<long long>(c.latency.Count()));
    out += buf;
  }
  std::snprintf(buf, sizeof buf,
                "# HELP ronghe_stream_model_version The model version the line runs.\n"
                "# TYPE ronghe_stream_model_version gauge\n"
                "ronghe_stream_model_version{line=\"%s\",pinned=\"%d\"} %lld\n"
                "# HELP ronghe_stream_batches_total Batches run, and those mixing cameras.\n"
                "# TYPE ronghe_stream_batches_total counter\n"
                "ronghe_stream_batches_total{line=\"%s\",kind=\"all\"} %lld\n"
                "ronghe_stream_batches_total{line=\"%s\",kind=\"mixed\"} %lld\n",
                line.c_str(), s.pinned ? 1 : 0, static_cast<long long>(s.version), line.c_str(),
                static_cast<long long>(s.batches), line.c_str(),
                static_cast<long long>(s.mixed_batches));
  out += buf;
  return out;
}

}  // namespace ronghe::stream
