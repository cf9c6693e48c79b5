// LogMachine: the test StateMachine of tests/raft: an append-only log of the
// commands it applied, which checks what RaftNode gives it (indexes never go
// back, commands are test commands, snapshots parse exactly) and counts
// every violation, so that the cluster tests can compare replicas (the log,
// its hash) and see that nothing odd was ever applied. Not netsem's state
// machine (src/replication is).
//
// Thread safety: apply, snapshot and restore are called on the raft thread;
// the readers (entries, hash, counters) may be called from any thread: one
// mutex guards everything.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "raft/state_machine.h"

namespace netsem::raft::testing {

class LogMachine : public StateMachine {
 public:
  // Commands must start with this prefix; others are refused (kInvalidArgument).
  static constexpr std::string_view kPrefix = "p:";

  // The result is the command's 1-based position in the log, in decimal.
  Result<std::string> apply(std::uint64_t index, std::string_view command) override;
  // "lm1 <last index> <n>\n" then n x "<length>:<bytes>".
  std::string snapshot() override;
  Status restore(std::string_view snapshot) override;

  std::vector<std::string> entries() const;
  std::size_t size() const;
  // FNV-1a over the entries, in order (with their lengths).
  std::uint64_t hash() const;
  std::uint64_t last_index() const;
  std::uint64_t snapshots() const;
  std::uint64_t restores() const;
  std::uint64_t refused() const;
  // Indexes that went back: never expected.
  std::uint64_t violations() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> entries_;
  std::uint64_t last_index_ = 0;
  std::uint64_t snapshots_ = 0, restores_ = 0, refused_ = 0, violations_ = 0;
};

}  // namespace netsem::raft::testing
