// What applying an entry produces, per command: the answer the proposer
// writes to its client, the completions of other sessions' queued requests
// (grants, timeouts, cancellations) and the sessions that ended; encoded so
// that the leader's network layer, which proposed the entry, can deliver
// them (StateMachine::apply returns encode_results(...)). Structured values,
// not protocol lines: the mapping to v1 and ACE answers stays the
// dispatcher's.
//
// Thread safety: plain values and reentrant functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"
#include "protocol/error_code.h"
#include "replication/entry.h"
#include "table/semaphore_table.h"

namespace netsem::replication {

inline constexpr std::string_view kResultsMagic = "NSRR";
// Version 2 added kDuplicate and kNotHost; version 1 bytes are refused.
inline constexpr std::uint8_t kResultsVersion = 2;

// The proposer's answer to one command.
struct Answer {
  enum class Type : std::uint8_t {
    kNone = 0,       // nothing to answer (TouchAll, AdvanceTime, a touch, a close)
    kOk = 1,         // OK (CANCEL, CREATE, DELETE, KICK, HELLO, Reconfigure, SetMember, RemoveMember);
                     // ResumeSession: number is the session's last seq
    kValue = 2,      // OK <number>: the value after a RELEASE or POST
    kGranted = 3,    // OK <fence>: ACQUIRE or WAIT granted at once
    kQueued = 4,     // queued: number is its position (1 = head); it completes later
    kTimedOut = 5,   // a try that could not be granted
    kError = 6,      // ERR <error>; no_fence: LIMIT because no fence could be had
    kOpened = 7,     // OpenSession: number is the new session's id
    kNoSession = 8,  // the session is not open (it ended in an earlier entry)
    kDuplicate = 9,  // a SessionRequest whose seq is not above the session's last (number): nothing changed
    kNotHost = 10,   // the command's origin does not host the session (number: the host): nothing changed
  };
  Type type = Type::kNone;
  std::uint64_t number = 0;
  protocol::ErrorCode error = protocol::ErrorCode::kNone;  // kError: ResumeSession's wrong secret is kDenied
  bool no_fence = false;
  friend bool operator==(const Answer&, const Answer&) = default;
};

// A session the command ended: closed by it, kicked, or silent too long.
struct Ended {
  SessionId session = 0;
  CloseCause cause = CloseCause::kClosed;
  // How many of the command's completions came before this end (they were
  // delivered while the session was open; the rest came after it).
  std::uint32_t after_completions = 0;
  friend bool operator==(const Ended&, const Ended&) = default;
};

struct CommandResult {
  Answer answer;
  server::Completions completions;  // in the order they happened
  std::vector<Ended> ended;         // in the order they happened
  friend bool operator==(const CommandResult& a, const CommandResult& b) {
    if (a.answer != b.answer || a.ended != b.ended || a.completions.size() != b.completions.size()) return false;
    for (std::size_t i = 0; i < a.completions.size(); ++i) {
      const server::Completion& x = a.completions[i];
      const server::Completion& y = b.completions[i];
      if (x.session != y.session || x.tag != y.tag || x.type != y.type || x.fence != y.fence) return false;
    }
    return true;
  }
};

struct EntryResults {
  std::uint64_t index = 0;              // the log index of the entry
  std::int64_t time_ms = 0;             // the log time it was applied at
  std::vector<CommandResult> commands;  // one per command, in order
  friend bool operator==(const EntryResults&, const EntryResults&) = default;
};

std::string encode_results(const EntryResults& results);
// kCorruption naming what is wrong for bytes encode_results did not make.
Result<EntryResults> decode_results(std::string_view bytes);

}  // namespace netsem::replication
