// libFuzzer target for the replicated state machine's decoders
// (src/replication: decode_entry, StateMachine::restore, decode_results):
// arbitrary bytes never crash them, read outside the buffer or half-apply
// anything, and what they accept is canonical: an accepted entry re-encodes
// to the same bytes and applies to a state machine that then snapshots and
// restores to itself; an accepted snapshot snapshots back to the same bytes
// and accepts further entries; accepted results re-encode to themselves.
//
// The first input byte picks a mode. Random bytes almost never carry a valid
// frame (magic, version, length, crc32), so two modes frame the rest
// correctly, letting the fuzzer reach the entry and snapshot parsers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "replication/state_machine.h"
#include "replication/wire.h"

namespace {

namespace rep = netsem::replication;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string framed(std::string_view magic, std::uint8_t version, std::string_view body) {
  rep::wire::Writer w = rep::wire::begin_frame(magic, version);
  w.bytes().append(body);
  return rep::wire::end_frame(w);
}

const std::string kSecret = "00112233445566778899aabbccddeeff";

rep::OpenSession open_session(rep::ServerId origin, std::uint64_t nonce) {
  rep::OpenSession open;
  open.peer = "peer";
  open.dialect = "v1";
  open.origin = origin;
  open.nonce = nonce;
  open.secret_digest = rep::secret_digest(kSecret);
  return open;
}

// A state machine with sessions on servers 1 to 3 (one resumed on another),
// holders, a queue and members, as entries find it: a fuzzed entry's
// origins, seqs and secrets meet hosts, last seqs and a secret.
void seed(rep::StateMachine& sm) {
  rep::Entry entry;
  entry.time_ms = 1000;
  entry.commands.push_back(rep::Reconfigure{{{"d", 2}}, 5000});
  entry.commands.push_back(rep::SetMember{1, "127.0.0.1:53555"});
  entry.commands.push_back(rep::SetMember{2, "127.0.0.2:53555"});
  for (int i = 0; i < 3; ++i) entry.commands.push_back(open_session(static_cast<rep::ServerId>(i + 1), 7));
  entry.commands.push_back(rep::ResumeSession{3, 1, rep::secret_digest(kSecret), 2});
  for (rep::SessionId s = 1; s <= 3; ++s) {
    rep::SessionRequest r;
    r.session = s;
    r.origin = s == 2 ? 2 : 1;
    r.seq = 1;
    r.tag = "t";
    r.name = "d";
    r.timeout_ms = 500;
    entry.commands.push_back(r);
  }
  check(static_cast<bool>(sm.apply(1, rep::encode_entry(entry))));
}

void entry(std::string_view bytes) {
  auto decoded = rep::decode_entry(bytes);
  if (!decoded) return;
  // The current version's bytes come back as they were; an older one's
  // (its secrets hashed) as an entry that decodes to the same commands.
  if (static_cast<std::uint8_t>(bytes[4]) == rep::kEntryVersion) {
    check(rep::encode_entry(*decoded) == bytes);
  } else {
    auto again = rep::decode_entry(rep::encode_entry(*decoded));
    check(again && *again == *decoded);
  }
  rep::StateMachine sm;
  seed(sm);
  auto applied = sm.apply(2, bytes);
  check(static_cast<bool>(applied));
  auto results = rep::decode_results(*applied);
  check(results && results->commands.size() == decoded->commands.size());
  const std::string snapshot = sm.snapshot();
  rep::StateMachine restored;
  check(restored.restore(snapshot).is_ok());
  check(restored.snapshot() == snapshot);
}

void snapshot(std::string_view bytes) {
  rep::StateMachine sm;
  seed(sm);
  const std::string before = sm.snapshot();
  if (!sm.restore(bytes).is_ok()) {
    check(sm.snapshot() == before);  // refused: nothing changed
    return;
  }
  // The current version's bytes come back as they were; a version 2
  // snapshot's (its secrets hashed) as one that restores to itself.
  const std::string again = sm.snapshot();
  if (static_cast<std::uint8_t>(bytes[4]) == rep::kSnapshotVersion) {
    check(again == bytes);
  } else {
    rep::StateMachine restored;
    check(restored.restore(again).is_ok() && restored.snapshot() == again);
  }
  rep::Entry next;
  next.time_ms = rep::kMaxLogTimeMs;
  next.commands.push_back(rep::AdvanceTime{});
  next.commands.push_back(open_session(1, 1));
  next.commands.push_back(rep::TouchAll{});
  check(static_cast<bool>(sm.apply(sm.last_index(), rep::encode_entry(next))));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 7) {
    case 0:
      entry(rest);
      break;
    case 1:
      entry(framed(rep::kEntryMagic, rep::kEntryVersion, rest));
      break;
    case 2:
      snapshot(rest);
      break;
    case 3:
      snapshot(framed(rep::kSnapshotMagic, rep::kSnapshotVersion, rest));
      break;
    case 5:  // the version before the secrets' digests, still read
      entry(framed(rep::kEntryMagic, rep::kOldestEntryVersion, rest));
      break;
    case 6:
      snapshot(framed(rep::kSnapshotMagic, rep::kOldestSnapshotVersion, rest));
      break;
    case 4:
      if (auto results = rep::decode_results(rest)) check(rep::encode_results(*results) == rest);
      break;
  }
  return 0;
}
