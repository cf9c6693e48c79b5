// The semaphores netsem-soak exercises, fixed so that the driver, the
// workers and the checker agree on them without talking: defined names with
// limits 1, 3 and 10 (written to netsemd's [semaphores]), undefined names
// (limit 1, made by the first ACQUIRE and gone when idle), and the created
// semaphores only the driver touches (CREATE, then POST and WAIT).
//
// Thread safety: constant data.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace netsem::soak {

// A name the workers acquire and release.
struct WorkerName {
  std::string_view name;
  std::int64_t limit = 1;  // the server's limit: defined ones from the config, undefined 1
  bool defined = false;
  int weight = 1;     // how often a worker picks it, relative to the others
  int max_count = 1;  // a worker asks for 1..max_count permits at once
};

// A created semaphore: the driver CREATEs it with `value` free of `max`.
struct CreatedName {
  std::string_view name;
  std::int64_t value = 0;
  std::int64_t max = 1;
};

// The weights put more than the limit's worth of demand on every name with
// the default number of workers, so every limit is reached often.
inline constexpr std::string_view kLeaseName = "soak.lease";

inline const std::vector<WorkerName>& worker_names() {
  static const std::vector<WorkerName> names = {
      {.name = "soak.one", .limit = 1, .defined = true, .weight = 3, .max_count = 1},
      {.name = "soak.three", .limit = 3, .defined = true, .weight = 4, .max_count = 2},
      {.name = "soak.ten", .limit = 10, .defined = true, .weight = 8, .max_count = 4},
      {.name = "soak.undefined.a", .limit = 1, .defined = false, .weight = 2, .max_count = 1},
      {.name = "soak.undefined.b", .limit = 1, .defined = false, .weight = 2, .max_count = 1},
      // The lease workers' own name (weight 0: no other worker picks it).
      {.name = kLeaseName, .limit = 1, .defined = true, .weight = 0, .max_count = 1},
  };
  return names;
}

inline const std::vector<CreatedName>& created_names() {
  static const std::vector<CreatedName> names = {
      {.name = "soak.created.a", .value = 5, .max = 10},
      {.name = "soak.created.b", .value = 0, .max = 3},
      {.name = "soak.created.c", .value = 12, .max = 20},
  };
  return names;
}

}  // namespace netsem::soak
