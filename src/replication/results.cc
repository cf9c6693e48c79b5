// The results codec (results.h), framed as entries are (wire.h).
#include "replication/results.h"

#include "protocol/fields.h"
#include "replication/wire.h"

namespace netsem::replication {

std::string encode_results(const EntryResults& results) {
  wire::Writer w = wire::begin_frame(kResultsMagic, kResultsVersion);
  w.u64(results.index);
  w.i64(results.time_ms);
  w.u32(static_cast<std::uint32_t>(results.commands.size()));
  for (const CommandResult& c : results.commands) {
    w.u8(static_cast<std::uint8_t>(c.answer.type));
    w.u64(c.answer.number);
    w.u8(static_cast<std::uint8_t>(c.answer.error));
    w.u8(c.answer.no_fence ? 1 : 0);
    w.u32(static_cast<std::uint32_t>(c.completions.size()));
    for (const server::Completion& done : c.completions) {
      w.u64(done.session);
      w.str(done.tag);
      w.u8(static_cast<std::uint8_t>(done.type));
      w.u64(done.fence);
    }
    w.u32(static_cast<std::uint32_t>(c.ended.size()));
    for (const Ended& e : c.ended) {
      w.u64(e.session);
      w.u8(static_cast<std::uint8_t>(e.cause));
      w.u32(e.after_completions);
    }
  }
  return wire::end_frame(w);
}

Result<EntryResults> decode_results(std::string_view bytes) {
  auto body = wire::open_frame(bytes, kResultsMagic, kResultsVersion, "results");
  if (!body) return body.status();
  const auto corrupt = [](std::string_view why) {
    return Status(StatusCode::kCorruption, "results: " + std::string(why));
  };
  wire::Reader r(*body);
  EntryResults results;
  results.index = r.u64();
  results.time_ms = r.i64();
  const std::uint32_t n = r.u32();
  if (!r.ok() || n > r.remaining() / 19) return corrupt("truncated");
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    CommandResult& c = results.commands.emplace_back();
    const std::uint8_t type = r.u8();
    c.answer.number = r.u64();
    const std::uint8_t error = r.u8();
    const std::uint8_t no_fence = r.u8();
    if (type > static_cast<std::uint8_t>(Answer::Type::kNotHost)) return corrupt("unknown answer type");
    if (error > static_cast<std::uint8_t>(protocol::kLastErrorCode) || no_fence > 1) return corrupt("bad error");
    c.answer.type = static_cast<Answer::Type>(type);
    c.answer.error = static_cast<protocol::ErrorCode>(error);
    c.answer.no_fence = no_fence == 1;
    const std::uint32_t completions = r.u32();
    if (completions > r.remaining() / 19) return corrupt("truncated completions");
    for (std::uint32_t k = 0; k < completions && r.ok(); ++k) {
      server::Completion& done = c.completions.emplace_back();
      done.session = r.u64();
      done.tag = r.str(protocol::kMaxTagBytes);
      const std::uint8_t kind = r.u8();
      if (kind > static_cast<std::uint8_t>(server::Completion::Type::kNoFence)) return corrupt("unknown completion");
      done.type = static_cast<server::Completion::Type>(kind);
      done.fence = r.u64();
    }
    const std::uint32_t ended = r.u32();
    if (ended > r.remaining() / 13) return corrupt("truncated ends");
    for (std::uint32_t k = 0; k < ended && r.ok(); ++k) {
      Ended& e = c.ended.emplace_back();
      e.session = r.u64();
      const std::uint8_t cause = r.u8();
      if (cause < static_cast<std::uint8_t>(CloseCause::kClosed) ||
          cause > static_cast<std::uint8_t>(CloseCause::kShutdown)) {
        return corrupt("unknown close cause");
      }
      e.cause = static_cast<CloseCause>(cause);
      e.after_completions = r.u32();
      if (e.after_completions > c.completions.size()) return corrupt("end after more completions than there are");
    }
  }
  if (!r.done()) return corrupt("malformed");
  return results;
}

}  // namespace netsem::replication
