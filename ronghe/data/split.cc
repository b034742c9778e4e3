#include "ronghe/data/split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

namespace ronghe::data {

namespace {
std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}
void Shuffle(std::vector<int64_t>& v, std::mt19937_64& rng) {
  // Fisher-Yates with our own draw so the order does not depend on the standard library.
  for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(v[i], v[j]);
  }
}
}  // namespace

Result<SplitIndices> SplitSeeded(int64_t n, const std::vector<double>& fractions, uint64_t seed,
                                 const std::vector<int64_t>* labels) {
  if (fractions.size() != 3) {
    return InvalidArgument("split: expected three fractions (train, val, test), got " +
                           std::to_string(fractions.size()));
  }
  double sum = 0;
  for (double f : fractions) {
    if (f < 0 || f > 1) return InvalidArgument("split: fractions must lie in [0, 1]");
    sum += f;
  }
  if (std::fabs(sum - 1.0) > 1e-6) return InvalidArgument("split: fractions must sum to 1");
  if (labels && static_cast<int64_t>(labels->size()) != n) {
    return InvalidArgument("split: label count differs from example count");
  }
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> groups;
  if (labels) {
    std::map<int64_t, std::vector<int64_t>> by_class;
    for (int64_t i = 0; i < n; ++i) by_class[(*labels)[i]].push_back(i);
    for (auto& [c, idx] : by_class) groups.push_back(std::move(idx));
  } else {
    groups.push_back(Iota(n));
  }
  SplitIndices out;
  for (auto& g : groups) {
    Shuffle(g, rng);
    auto m = static_cast<int64_t>(g.size());
    auto n_train = static_cast<int64_t>(std::llround(fractions[0] * m));
    auto n_val = static_cast<int64_t>(std::llround(fractions[1] * m));
    n_train = std::min(n_train, m);
    n_val = std::min(n_val, m - n_train);
    out.train.insert(out.train.end(), g.begin(), g.begin() + n_train);
    out.val.insert(out.val.end(), g.begin() + n_train, g.begin() + n_train + n_val);
    out.test.insert(out.test.end(), g.begin() + n_train + n_val, g.end());
  }
  // Classes were appended one after another; mix them again so batches are not sorted by class.
  Shuffle(out.train, rng);
  Shuffle(out.val, rng);
  Shuffle(out.test, rng);
  return out;
}

std::vector<std::vector<int64_t>> PartitionIid(int64_t n, int parts, uint64_t seed) {
  std::vector<std::vector<int64_t>> out(std::max(parts, 1));
  std::vector<int64_t> idx = Iota(n);
  std::mt19937_64 rng(seed);
  Shuffle(idx, rng);
  for (int64_t i = 0; i < n; ++i) out[i % out.size()].push_back(idx[i]);
  return out;
}

Result<NamedPartition> PartitionByValue(const std::vector<std::string>& values,
                                        const std::map<std::string, std::string>& group_of) {
  std::map<std::string, std::vector<int64_t>> groups;
  for (size_t i = 0; i < values.size(); ++i) {
    std::string g = values[i];
    if (!group_of.empty()) {
      auto it = group_of.find(values[i]);
      if (it == group_of.end()) {
        return InvalidArgument("partition: value '" + values[i] + "' (row " + std::to_string(i) +
                               ") has no group in the mapping");
      }
      g = it->second;
    }
    groups[g].push_back(static_cast<int64_t>(i));
  }
  NamedPartition out;
  for (auto& [name, idx] : groups) {
    out.names.push_back(name);
    out.indices.push_back(std::move(idx));
  }
  return out;
}

namespace {
// Gamma(alpha, 1) draws normalised give a Dirichlet sample (Marsaglia-Tsang via std::gamma).
std::vector<double> DrawDirichlet(int k, double alpha, std::mt19937_64& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::vector<double> p(k);
  double s = 0;
  for (auto& x : p) s += (x = gamma(rng));
  if (s <= 0) {
    std::fill(p.begin(), p.end(), 1.0 / k);
  } else {
    for (auto& x : p) x /= s;
  }
  return p;
}
}  // namespace

Result<std::vector<std::vector<int64_t>>> PartitionDirichlet(const std::vector<int64_t>& labels,
                                                             int parts, double alpha, uint64_t seed,
                                                             int64_t min_size) {
  if (parts < 1) return InvalidArgument("partition: parts must be at least 1");
  if (!(alpha > 0)) return InvalidArgument("partition: dirichlet alpha must be > 0");
  if (static_cast<int64_t>(labels.size()) < parts * min_size) {
    return InvalidArgument("partition: " + std::to_string(labels.size()) +
                           " examples cannot give " + std::to_string(parts) +
                           " parts of at least " + std::to_string(min_size));
  }
  std::map<int64_t, std::vector<int64_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<int64_t>(i));
  std::mt19937_64 rng(seed);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::vector<std::vector<int64_t>> out(parts);
    for (auto& [c, idx] : by_class) {
      std::vector<int64_t> shuffled = idx;
      Shuffle(shuffled, rng);
      std::vector<double> p = DrawDirichlet(parts, alpha, rng);
      // Cumulative cut points over this class's examples.
      double acc = 0;
      size_t start = 0;
      for (int j = 0; j < parts; ++j) {
        acc += p[j];
        size_t end = j + 1 == parts
                         ? shuffled.size()
                         : std::min(shuffled.size(),
                                    static_cast<size_t>(std::llround(acc * shuffled.size())));
        out[j].insert(out[j].end(), shuffled.begin() + start, shuffled.begin() + end);
        start = end;
      }
    }
    bool ok = std::all_of(out.begin(), out.end(), [&](const auto& v) {
      return static_cast<int64_t>(v.size()) >= min_size;
    });
    if (ok) {
      for (auto& v : out) std::sort(v.begin(), v.end());
      return out;
    }
  }
  return FailedPrecondition("partition: no Dirichlet(" + std::to_string(alpha) +
                            ") draw gave every part at least " + std::to_string(min_size) +
                            " examples in 100 tries; raise alpha or lower min_size");
}

const std::map<std::string, std::string>& UsCensusRegions() {
  static const std::map<std::string, std::string> kRegions = [] {
    std::map<std::string, std::string> m;
    auto add = [&](const char* region, std::initializer_list<const char*> states) {
      for (auto s : states) m[s] = region;
    };
    add("Northeast", {"CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"});
    add("Midwest", {"IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"});
    add("South", {"DE", "FL", "GA", "MD", "NC", "SC", "VA", "DC", "WV", "AL", "KY", "MS", "TN",
                  "AR", "LA", "OK", "TX"});
    add("West", {"AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"});
    return m;
  }();
  return kRegions;
}

const std::map<std::string, std::string>& UsBankRegions() {
  static const std::map<std::string, std::string> kRegions = [] {
    std::map<std::string, std::string> m = UsCensusRegions();
    for (auto s : {"AL", "KY", "MS", "TN", "AR", "LA", "OK", "TX"}) m[s] = "Central";
    return m;
  }();
  return kRegions;
}

Result<std::map<std::string, std::string>> NamedGrouping(const std::string& name) {
  if (name.empty()) return std::map<std::string, std::string>();
  if (name == "us-census-regions") return UsCensusRegions();
  if (name == "us-bank-regions") return UsBankRegions();
  return InvalidArgument("unknown grouping '" + name + "' (us-census-regions, us-bank-regions)");
}

}  // namespace ronghe::data
