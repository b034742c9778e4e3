// Seeded splits and federated partitions over example indices. Pure index arithmetic: the same
// inputs and seed give the same indices on every machine (std::mt19937_64, no library RNG).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::data {

struct SplitIndices {
  std::vector<int64_t> train, val, test;
};

// Shuffles 0..n-1 with `seed` and cuts it by `fractions` (train, val, test; must sum to 1).
// With `labels` (one per example) the cut is stratified: each class keeps its share in every
// split, which matters for rare positives (5% in lending_club).
Result<SplitIndices> SplitSeeded(int64_t n, const std::vector<double>& fractions, uint64_t seed,
                                 const std::vector<int64_t>* labels = nullptr);

// Federated partitions: which examples each of `parts` participants holds.
// IID: a seeded shuffle dealt round-robin (sizes differ by at most one).
std::vector<std::vector<int64_t>> PartitionIid(int64_t n, int parts, uint64_t seed);

// By the value of a column: every distinct value (after `group_of`, e.g. state -> region) becomes
// one participant, ordered by name. Values missing from `group_of` are an error naming them;
// an empty `group_of` uses the values themselves.
struct NamedPartition {
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> indices;
};
Result<NamedPartition> PartitionByValue(const std::vector<std::string>& values,
                                        const std::map<std::string, std::string>& group_of);

// Label skew: for every class, its examples are spread over participants by proportions drawn
// from Dirichlet(alpha) (Hsu et al. 2019). Small alpha = strong skew; large alpha tends to IID.
// Redraws (up to 100 times) until every participant has at least `min_size` examples.
Result<std::vector<std::vector<int64_t>>> PartitionDirichlet(const std::vector<int64_t>& labels,
                                                             int parts, double alpha, uint64_t seed,
                                                             int64_t min_size = 1);

// US state code -> census region (Northeast, Midwest, South, West), for lending_club's addr_state.
const std::map<std::string, std::string>& UsCensusRegions();
// Five regions for the fraud consortium: the census regions with the South cut into its
// divisions, South Atlantic ("South") and East + West South Central ("Central").
const std::map<std::string, std::string>& UsBankRegions();
// A grouping by name: "us-census-regions" or "us-bank-regions"; "" = identity (empty map).
Result<std::map<std::string, std::string>> NamedGrouping(const std::string& name);

}  // namespace ronghe::data
