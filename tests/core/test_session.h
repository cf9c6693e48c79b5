// What the dispatcher's tests play the network layer and the journal with
// (tests/core): TestJournal says how far a real MemoryJournal is written,
// TestSession carries one session's lines to the dispatcher and reads its
// output as the peer would. Header only; event-loop-thread rules as the
// dispatcher's (one thread).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dispatcher.h"
#include "journal/journal.h"
#include "protocol/ace_codec.h"

namespace netsem::server {

// The journal as the dispatcher sees it: records come from a real
// MemoryJournal the table writes to; how far they are written is the
// test's to say (all of them unless `written` is set).
class TestJournal final : public JournalProgress {
 public:
  explicit TestJournal(const MemoryJournal& journal) : JournalProgress(journal.records_counter()), journal_(journal) {}
  std::uint64_t answerable_sequence() const override { return written ? *written : journal_.records(); }
  bool ok() const override { return true; }
  std::optional<std::uint64_t> written;

 private:
  const MemoryJournal& journal_;
};

// One session as the network layer would carry it: it records what the
// dispatcher asks of it, ends the session as the network layer does, and
// reads the output as the peer would (up to what may be sent).
class TestSession final : public SessionEvents {
  Dispatcher& dispatcher_;  // first: `state` registers with it

 public:
  TestSession(Dispatcher& dispatcher, SessionId id, protocol::Dialect dialect = protocol::Dialect::kV1)
      : dispatcher_(dispatcher), state(id, "127.0.0.1:" + std::to_string(40000 + id), *this) {
    state.dialect = dialect;
    dispatcher_.begin_session(state);
  }
  ~TestSession() override { dispatcher_.end_session(state, stats::EndCause::kClose); }

  void completion_added() override { ++completions; }
  void end(stats::EndCause cause, std::string_view reason) override {
    ends.emplace_back(reason);
    causes.push_back(cause);
    dispatcher_.end_session(state, cause);
  }
  void timer_changed() override { ++timer_changes; }

  // Sends one line; returns what the peer can read now.
  std::string request(std::string_view line) {
    dispatcher_.handle_line(state, line);
    return read();
  }
  void ace(protocol::AceParser::Token token, std::string_view name = {}) { dispatcher_.handle_ace(state, token, name); }
  // What the peer reads now: the output up to the first answer that waits
  // for the journal (as Session::flush writes it).
  std::string read() {
    const std::size_t end = dispatcher_.sendable_end(state);
    std::string text = state.out.substr(state.out_sent, end - state.out_sent);
    state.out_sent = end;
    if (end == state.out.size()) {
      state.out.clear();
      state.out_sent = 0;
      state.holds.clear();
    }
    return text;
  }

  SessionState state;
  int completions = 0;
  int timer_changes = 0;
  std::vector<std::string> ends;
  std::vector<stats::EndCause> causes;
};

}  // namespace netsem::server
