// Histogram: how a duration (or any non-negative integer) is distributed,
// in fixed power-of-two buckets: the shape of a Prometheus histogram
// (cumulative buckets `le`, a sum and a count) at the cost of a counter.
//
// Bucket i counts the observations v with 2^(i-1) < v <= 2^i (bucket 0:
// v <= 1), for i < kBounds; the last bucket counts what lies above
// 2^(kBounds-1) (Prometheus's `+Inf`). observe() finds its bucket with one
// bit_width, no loop and no branch on the value, and adds twice: no
// allocation, no lock. The resolution is a factor of two, which is what an
// operator reads a latency distribution for (is it 100 us or 10 ms?).
//
// A Histogram is a plain value: copying it is the snapshot (see
// stats/stats.h). The count is not stored: it is the sum of the buckets,
// computed by count() when the figures are read, not on every observation.
//
// Thread safety: none; one writer (the event loop), copies for readers.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace netsem::stats {

class Histogram {
 public:
  // Bounds 1, 2, 4, ..., 2^39: in microseconds, from 1 us to about 6.4 days.
  static constexpr std::size_t kBounds = 40;
  // The buckets: one per bound, then the one above every bound (+Inf).
  static constexpr std::size_t kBuckets = kBounds + 1;

  // The upper bound (`le`) of bucket `i`. REQUIRES: i < kBounds.
  static constexpr std::uint64_t bound(std::size_t i) { return std::uint64_t{1} << i; }

  // The bucket of `value`: the smallest i with value <= bound(i), or kBounds
  // when `value` exceeds every bound.
  static constexpr std::size_t bucket_of(std::uint64_t value) {
    // bit_width(v - 1) is the exponent of the smallest power of two >= v,
    // for v >= 2; `value != 0` keeps 0 (and 1) in bucket 0.
    return std::min<std::size_t>(static_cast<std::size_t>(std::bit_width(value - (value != 0))), kBounds);
  }

  void observe(std::uint64_t value) {
    ++buckets_[bucket_of(value)];
    sum_ += value;
  }

  // Observations in bucket `i` alone (not cumulative). REQUIRES: i < kBuckets.
  std::uint64_t bucket(std::size_t i) const { return buckets_[i]; }
  // Every observation, the +Inf bucket's cumulative count.
  std::uint64_t count() const {
    std::uint64_t total = 0;
    for (const std::uint64_t n : buckets_) total += n;
    return total;
  }
  // The sum of the observed values (wraps only after 2^64: 584,000 years of
  // microseconds).
  std::uint64_t sum() const { return sum_; }

  friend bool operator==(const Histogram&, const Histogram&) = default;

 private:
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t sum_ = 0;
};

}  // namespace netsem::stats
