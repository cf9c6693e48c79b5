// LatencyHistogram: latencies in nanoseconds counted in logarithmic buckets,
// in the manner of HdrHistogram: every power of two is split into 128 linear
// sub-buckets, so any recorded value is known to within 1/128 (< 0.8 %)
// whatever its magnitude, and recording is a few instructions with no
// allocation. Percentiles report the upper edge of their bucket, so they
// never understate a latency.
//
// Thread safety: none; one histogram per thread.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace netsem::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBucketBits;

  LatencyHistogram() : counts_(bucket_of(~std::uint64_t{0}) + 1, 0) {}

  void record(std::uint64_t nanos) {
    ++counts_[bucket_of(nanos)];
    ++count_;
    sum_ += nanos;
    max_ = std::max(max_, nanos);
  }

  void reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    count_ = sum_ = max_ = 0;
  }

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }

  // The smallest bucket edge at or below which `fraction` (0..1] of the
  // samples lie; 0 when nothing was recorded.
  std::uint64_t percentile(double fraction) const {
    if (count_ == 0) return 0;
    auto wanted = static_cast<std::uint64_t>(fraction * static_cast<double>(count_) + 0.5);
    wanted = std::clamp<std::uint64_t>(wanted, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= wanted) return std::min(upper_edge(i), max_);
    }
    return max_;
  }

 private:
  // Values below kSubBuckets have a bucket each; above, the top
  // kSubBucketBits + 1 bits of the value pick the bucket.
  static std::size_t bucket_of(std::uint64_t v) {
    if (v < kSubBuckets) return static_cast<std::size_t>(v);
    const int shift = std::bit_width(v) - (kSubBucketBits + 1);
    return static_cast<std::size_t>(kSubBuckets + static_cast<std::uint64_t>(shift) * kSubBuckets +
                                    ((v >> shift) - kSubBuckets));
  }

  // The largest value that falls into bucket `i`.
  static std::uint64_t upper_edge(std::size_t i) {
    if (i < kSubBuckets) return i;
    const std::uint64_t shift = (i - kSubBuckets) / kSubBuckets;
    const std::uint64_t sub = (i - kSubBuckets) % kSubBuckets + kSubBuckets;
    return ((sub + 1) << shift) - 1;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace netsem::bench
