// Call: one request in flight on the Connection (connection.h), and its
// Reply. A caller queues it with Connection::send and waits on it
// (Connection::wait); the I/O thread sends it, matches the answer to its tag
// and completes it exactly once (connection.cc's dispatch and complete), or
// fails it when its session ends. holds_the_line, which each Call asks when
// it is made, is defined in connection.cc, with that hot path.
//
// Thread safety: a Call's `done` and `reply` are guarded by its mutex; the
// members marked "loop only" belong to the I/O thread; the rest are set once,
// when it is made (`line` is rewritten by the I/O thread only).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "netsem/status.h"
#include "protocol/answers.h"
#include "protocol/error_code.h"

namespace netsem::client {

// The final answer to a request, or why there is none.
struct Reply {
  Status failure;       // kUnavailable or kShutdown: the session ended first
  bool kicked = false;  // with `failure`: the session ended by an administrator's KICK
  bool broken = false;  // with `failure`: the client ended it, the server broke the protocol
  protocol::AnswerType type = protocol::AnswerType::kOk;
  protocol::ErrorCode error = protocol::ErrorCode::kNone;
  std::string rest;                // after the answer word (ERR: code and message)
  std::string message;             // ERR: the human-readable part
  std::vector<std::string> items;  // LIST: the `rest` of each ITEM line
};

// Whether the server reads nothing more of the session before it answers
// request `line` (docs/protocol.md, CLUSTER: "the session's later requests
// wait for it"): CLUSTER ADD and REMOVE, which wait for a change of the
// cluster's configuration, seconds for an ADD, and CLUSTER FENCES, which
// waits for its entry to commit.
bool holds_the_line(std::string_view line);

// One request in flight. The I/O thread completes it exactly once.
struct Call {
  Call(std::string tag_in, std::uint64_t session_in, std::string line_in, bool may_wait_in = false)
      : tag(std::move(tag_in)),
        session(session_in),
        line(std::move(line_in)),
        may_wait(may_wait_in),
        holds_line(holds_the_line(line)) {}
  const std::string tag;
  const std::uint64_t session;
  // The whole request line, "\n" included. Written by the I/O thread only,
  // when a resumed session re-sends the request (a shorter timeout).
  std::string line;
  // A request the server may queue, whose answer may come at any time later:
  // an ACQUIRE or WAIT with a timeout other than 0.
  const bool may_wait;
  // holds_the_line(line): the requests sent after it are not read, PINGs
  // included, until it is answered.
  const bool holds_line;

  std::mutex mutex;
  std::condition_variable cv;  // notified when done, and by cancel tokens
  bool done = false;           // guarded by mutex
  Reply reply;                 // guarded by mutex; final once done

  // Loop only.
  bool answered = false;  // some line answered it (QUEUED counts)
  std::uint64_t seq = 0;  // its place in the session's send order
  std::chrono::steady_clock::time_point sent_at;
  // When the server could read it, which request_timeout and the T/6 of a
  // silence count from: sent_at, or for a request sent behind an unanswered
  // holds_line one, when that one was answered (the server read nothing
  // before).
  std::chrono::steady_clock::time_point readable_at;
  std::vector<std::string> items;
};

}  // namespace netsem::client
