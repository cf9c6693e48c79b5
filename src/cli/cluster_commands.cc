// netsem cluster status|add|remove|raise-fences (cluster_commands.h): CLUSTER STATUS's
// JSON read with nlohmann-json (its members are an array of objects), the
// leader followed for a change.
#include "cli/cluster_commands.h"

#include <charconv>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli.h"
#include "common/duration.h"
#include "protocol/requests.h"

namespace netsem::cli {

namespace {

struct ClusterOptions {
  bool json = false;
  std::string id;
  std::string raft_address;
  std::string client_address;
  CLI::App* status = nullptr;
  CLI::App* add = nullptr;
  CLI::App* remove = nullptr;
  CLI::App* raise_fences = nullptr;
  std::string by;
  std::string timeout;  // add and remove: -t, how long to follow a change
};

std::string text_of(const nlohmann::json& object, const char* key) {
  if (!object.contains(key)) return "-";
  const nlohmann::json& value = object.at(key);
  if (value.is_string()) return value.get<std::string>().empty() ? "-" : value.get<std::string>();
  return value.dump();
}

// The CONTACT cell of a member: when the server asked last heard from it
// over Raft ("40 ms", "never"), and on the leader "unreachable" when that was
// longer ago than an election timeout; "-" for the server itself.
std::string contact_of(const nlohmann::json& member) {
  if (!member.contains("last_contact_ms")) return "-";
  const nlohmann::json& ms = member.at("last_contact_ms");
  const std::string since = ms.is_number() ? ms.dump() + " ms" : "never";
  const bool unreachable = member.contains("reachable") && member.at("reachable") == false;
  return unreachable ? "unreachable (" + since + ")" : since;
}

// "12 s" of a status's no_leader_ms; "" when it names a leader (or is no
// status).
std::string leaderless_for(const nlohmann::json& view) {
  if (!view.is_object() || !view.contains("no_leader_ms") || !view.at("no_leader_ms").is_number()) return {};
  return std::to_string(view.at("no_leader_ms").get<std::int64_t>() / 1000) + " s";
}

int status_command(const GlobalOptions& global, bool json) {
  // Sessionless: a server that knows no leader answers too.
  Connection connection = connect(global, /*sessionless=*/true);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "cluster status"); failed != kExitOk) return failed;
  auto status = connection.client->cluster_status();
  if (!status) return report_failure(connection, status.status());
  const nlohmann::json view = nlohmann::json::parse(*status, nullptr, false);
  // A server with no leader serves nothing that needs the log: shown, and
  // the exit says it (69: unavailable), --json or not.
  const std::string leaderless = leaderless_for(view);
  const auto done = [&] {
    if (leaderless.empty()) return kExitOk;
    print_error("cluster status: server " + text_of(view, "id") + " has known no leader for " + leaderless +
                ": it serves nothing that needs the log (it is cut off from the majority, the majority is down, or "
                "it was removed)");
    return kExitUnavailable;
  };
  if (json) {
    print(*status + "\n");
    return done();
  }
  if (!view.is_object() || !view.contains("members") || !view.at("members").is_array()) {
    print_error("cluster status: the server's answer is not the JSON of CLUSTER STATUS: " + status->substr(0, 200));
    return kExitProtocol;
  }
  const std::string leader = leaderless.empty()
                                 ? "leader " + text_of(view, "leader_id") + " at " + text_of(view, "leader")
                                 : "no leader known for " + leaderless;
  std::string text = "server " + text_of(view, "id") + " (" + text_of(view, "role") + ", term " +
                     text_of(view, "term") + "); " + leader + "; commit " + text_of(view, "commit_index") +
                     ", applied " + text_of(view, "applied_index") + "\n";
  std::vector<std::vector<std::string>> cells = {{"ID", "ROLE", "RAFT", "CLIENT", "MATCH", "LAG", "CONTACT"}};
  for (const nlohmann::json& member : view.at("members")) {
    cells.push_back({text_of(member, "id"), text_of(member, "role"), text_of(member, "raft"), text_of(member, "client"),
                     text_of(member, "match_index"), text_of(member, "lag"), contact_of(member)});
  }
  text += aligned_table(cells);
  print(text);
  return done();
}

// Who leads, in which term, as a server's CLUSTER STATUS `view` says: itself
// when it leads, else the leader it names; "-" for what it does not know.
struct Leadership {
  std::string id = "-";
  std::string term = "-";
  std::string address;  // the leader's client address; "" when unknown
};

Leadership leadership_of(const nlohmann::json& view) {
  if (!view.is_object()) return {};
  const std::string address = text_of(view, "leader");
  return {text_of(view, text_of(view, "role") == "leader" ? "id" : "leader_id"), text_of(view, "term"),
          address == "-" ? "" : address};
}

// Whether `view` is the leader `asked` named, still leading in the same
// term: then it never lost its leadership, and its configuration shows the
// outcome of a change it was given.
bool same_leadership(const nlohmann::json& view, const Leadership& asked) {
  return view.is_object() && view.contains("members") && view.at("members").is_array() &&
         text_of(view, "role") == "leader" && asked.id != "-" && text_of(view, "id") == asked.id &&
         text_of(view, "term") == asked.term;
}

// A connection to the leader: the one made when the server named leads (or
// names no leader: its refusal then says why, at once), else one to the
// leader it names. Sessionless, as for status: a server that knows no
// leader answers. `asked`: the leadership the server named saw before the
// change.
Connection connect_to_leader(const GlobalOptions& global, std::string_view what, Leadership& asked) {
  Connection connection = connect(global, /*sessionless=*/true);
  if (!connection.client) return connection;
  if (const int failed = require_server(connection, what); failed != kExitOk) {
    connection.client.reset();
    connection.failure = failed;
    return connection;
  }
  auto status = connection.client->cluster_status();
  if (!status) return connection;  // the change's own answer says why
  const nlohmann::json view = nlohmann::json::parse(*status, nullptr, false);
  asked = leadership_of(view);
  if (!view.is_object() || text_of(view, "role") == "leader") return connection;
  const std::string leader =
      view.contains("leader") && view.at("leader").is_string() ? view.at("leader").get<std::string>() : "";
  if (leader.empty()) return connection;
  if (global.verbosity > 0) print_error(std::string(what) + ": asking the leader, " + leader);
  GlobalOptions at_leader = global;
  at_leader.servers = {leader};
  Connection there = connect(at_leader, /*sessionless=*/true);
  if (!there.client) return connection;  // ask here: the refusal names the leader
  return there;
}

// Server `id`'s role in the configuration of CLUSTER STATUS's `view`: "" when
// it is no member.
std::string role_in(const nlohmann::json& view, std::uint64_t id) {
  std::string role;
  for (const nlohmann::json& member : view.at("members")) {
    if (member.is_object() && text_of(member, "id") == std::to_string(id)) role = text_of(member, "role");
  }
  return role;
}

// " out of its configuration", " as a spare".
std::string as_member(const std::string& role) {
  return role.empty() ? " out of its configuration" : " as a " + role;
}

// Whether server `id` has a replicated client address in `view` (an ADD of
// it runs, or its address is not yet taken back: docs/protocol.md,
// CLUSTER STATUS's client_addresses).
bool has_client_address(const nlohmann::json& view, std::uint64_t id) {
  if (!view.contains("client_addresses") || !view.at("client_addresses").is_array()) return false;
  for (const nlohmann::json& entry : view.at("client_addresses")) {
    if (entry.is_object() && text_of(entry, "id") == std::to_string(id)) return true;
  }
  return false;
}

// Server `id`'s match index in the leader's `view` ("-" when none).
std::string match_of(const nlohmann::json& view, std::uint64_t id) {
  for (const nlohmann::json& member : view.at("members")) {
    if (member.is_object() && text_of(member, "id") == std::to_string(id)) return text_of(member, "match_index");
  }
  return "-";
}

int change_command(const GlobalOptions& global, const ClusterOptions& options, bool add) {
  const std::string what = add ? "cluster add" : "cluster remove";
  std::uint64_t id = 0;
  const char* end = options.id.data() + options.id.size();
  const bool digits = !options.id.empty() && options.id.find_first_not_of("0123456789") == std::string::npos;
  const auto [stop, error] = std::from_chars(options.id.data(), end, id);
  if (!digits || error != std::errc() || stop != end || id == 0 || id > protocol::kMaxServerId) {
    print_error(what + ": ID must be a server id, a whole number from 1 to " + std::to_string(protocol::kMaxServerId) +
                " (2^53) in decimal digits, not '" + options.id + "'");
    return kExitUsage;
  }
  // Validated by the option's check.
  std::optional<std::chrono::milliseconds> timeout;
  if (auto parsed = parse_duration(options.timeout); !options.timeout.empty() && parsed) timeout = *parsed;
  Leadership asked;
  Connection connection = connect_to_leader(global, what, asked);
  if (!connection.client) return connection.failure;
  const Status status = add ? connection.client->cluster_add(id, options.raft_address, options.client_address)
                            : connection.client->cluster_remove(id);
  const std::string done =
      add ? "server " + std::to_string(id) + " added: a voter\n" : "server " + std::to_string(id) + " removed\n";
  if (status.is_ok()) {
    print(done);
    return kExitOk;
  }
  // TIMEOUT: the leader answered that it gave up on the change. For ADD,
  // libraft gave up waiting for the new server to catch up (the leader
  // removed the spare again, or failed to); or, for both, the leader lost
  // its leadership before the change committed, and a new leader may commit
  // it or drop it. UNAVAILABLE: no answer came. The leader reads nothing
  // more of the connection until it answers (docs/protocol.md, CLUSTER), so
  // libnetsem ends it as silent once half the session timeout passed (the
  // lease), while an ADD whose new server needs longer to catch up still
  // runs there (note26 section 7 item 5); or the connection broke. Either
  // way the leader's configuration now says which, on a new connection for
  // the latter: followed while the same leader, in the same term, shows the
  // change running (the new server a spare, or its client address
  // replicated before it is one), which libraft ends once the new server
  // caught up, or made no progress for 5 s.
  // No leader seen before the change (no server answered CLUSTER STATUS):
  // nothing to follow, as any command that reached none.
  if (status.code() != StatusCode::kTimeout && (status.code() != StatusCode::kUnavailable || asked.address.empty())) {
    return report_failure(connection, status);
  }
  const bool answered = status.code() == StatusCode::kTimeout;
  Result<std::string> now = Status(StatusCode::kUnavailable, "no look at the leader");
  nlohmann::json view;
  Connection there;
  if (answered) {
    now = connection.client->cluster_status();
    if (now) view = nlohmann::json::parse(*now, nullptr, false);
  } else if (!asked.address.empty()) {
    if (global.verbosity > 0) {
      print_error(what + ": no answer (" + status.message() + "); following the change at the leader, " +
                  asked.address);
    }
    GlobalOptions at_leader = global;
    at_leader.servers = {asked.address};
    there = connect(at_leader, /*sessionless=*/true);
    // The new server's progress: libraft gives up on a catch-up round with
    // none for 5 s; twice that here, should a spare stay for another reason.
    constexpr std::chrono::seconds kNoProgress{10};
    std::string match = "-";
    auto progress_at = std::chrono::steady_clock::now();
    while (there.client) {
      now = there.client->cluster_status();
      if (!now) break;
      view = nlohmann::json::parse(*now, nullptr, false);
      if (!add || !same_leadership(view, asked)) break;
      const std::string role = role_in(view, id);
      if (role == "voter" || (role.empty() && !has_client_address(view, id))) break;
      const auto at = std::chrono::steady_clock::now();
      if (const std::string seen = match_of(view, id); seen != match) {
        match = seen;
        progress_at = at;
      }
      if (at - progress_at >= kNoProgress) break;
      if (timeout && at - connection.started >= *timeout) {
        print_error(what + ": not done yet after " + seconds_text(*timeout) + ": server " + std::to_string(id) +
                    " is still catching up (" + (role.empty() ? "not yet a spare" : "a " + role) + ", match index " +
                    match + " of " + text_of(view, "last_index") + "); server " + asked.id +
                    " goes on with the change: run netsem cluster status to see it end");
        return kExitTimeout;
      }
      if (global.verbosity > 1) {
        print_error(what + ": server " + std::to_string(id) + " is " +
                    (role.empty() ? "not yet a spare" : "a " + role) + ", match index " + match + " of " +
                    text_of(view, "last_index"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  const std::string look = "; run netsem cluster status to see whether server " + std::to_string(id) + " is a member";
  const bool shown = view.is_object() && view.contains("members") && view.at("members").is_array();
  const std::string role = shown ? role_in(view, id) : "";
  const std::string unanswered = "no answer came from server " + asked.id + " (" + status.message() + ")";
  if (now && same_leadership(view, asked)) {
    // The same leader in the same term never lost its leadership: what
    // its configuration shows is the outcome, known.
    if (add ? role == "voter" : role.empty()) {
      print(done);
      return kExitOk;
    }
    if (!answered && !add) {
      // A REMOVE not yet committed may still be: nothing shows it running.
      print_error(what + ": not done for certain: " + unanswered + "; server " + asked.id +
                  " still leads, in the same term, and has server " + std::to_string(id) + as_member(role) +
                  ", and may still remove it" + look);
      return kExitTimeout;
    }
    const std::string why_known =
        add ? "server " + std::to_string(id) +
                  " did not catch up with the log in time (is it running, with join = on, and is " +
                  options.raft_address + " reachable from the leader?)"
            : "the leader gave up on the change";
    print_error(what + ": not done: " + why_known + "; server " + asked.id +
                " still leads, in the same term, and has server " + std::to_string(id) + as_member(role));
    return kExitTimeout;
  }
  const std::string member_now =
      !now     ? look + " (" + now.status().message() + ")"
      : !shown ? look
               : "; server " + text_of(view, "id") + " (" + text_of(view, "role") + ", term " + text_of(view, "term") +
                     ") now has server " + std::to_string(id) + as_member(role) +
                     (text_of(view, "role") == "leader"
                          ? ""
                          : ", which a new leader may still change: run netsem cluster status once one is elected");
  const std::string why = !answered ? unanswered
                          : add     ? "server " + std::to_string(id) +
                                      " did not catch up with the log in time (is it running, with join = on, "
                                      "and is " +
                                      options.raft_address +
                                      " reachable from the leader?), or the leader lost its leadership before the "
                                      "change committed (the leader's log says which)"
                                : "the leader lost its leadership before the change committed";
  print_error(what + ": not done for certain: " + why + "; the outcome is unknown" + member_now);
  // No server answers now: as any command that reached none.
  return answered || now ? kExitTimeout : kExitUnavailable;
}

int raise_fences_command(const GlobalOptions& global, const ClusterOptions& options) {
  const std::string what = "cluster raise-fences";
  std::uint64_t by = 0;
  const char* end = options.by.data() + options.by.size();
  const bool digits = !options.by.empty() && options.by.find_first_not_of("0123456789") == std::string::npos;
  const auto [stop, error] = std::from_chars(options.by.data(), end, by);
  if (!digits || error != std::errc() || stop != end || by == 0 || by > protocol::kMaxFenceRaise) {
    print_error(what + ": N must be a whole number from 1 to " + std::to_string(protocol::kMaxFenceRaise) +
                " (2^53) in decimal digits, not '" + options.by + "'");
    return kExitUsage;
  }
  Leadership asked;
  Connection connection = connect_to_leader(global, what, asked);
  if (!connection.client) return connection.failure;
  const Result<std::uint64_t> last = connection.client->cluster_raise_fences(by);
  if (!last && last.status().code() == StatusCode::kTimeout) {
    // The leader lost its leadership before the raise committed: a new
    // leader may commit it or drop it.
    print_error(what +
                ": not done for certain: the leader lost its leadership before the raise committed; the "
                "outcome is unknown (STATS' last_fence on the new leader shows it; raising again is safe)");
    return kExitTimeout;
  }
  if (!last) return report_failure(connection, last.status());
  print("fences raised by " + std::to_string(by) + ": the last fence is " + std::to_string(*last) +
        "; every fence handed out from now on is above it\n");
  return kExitOk;
}

}  // namespace

Action define_cluster(CLI::App& command) {
  auto options = std::make_shared<ClusterOptions>();
  options->status = command.add_subcommand("status", "show the cluster as this server sees it: role, leader, members");
  options->status->add_flag("--json", options->json, "print CLUSTER STATUS's JSON as the server sent it");
  options->add = command.add_subcommand(
      "add", "add server ID (started with join = on) at RAFT-ADDRESS and CLIENT-ADDRESS; done once it is a voter");
  options->add->add_option("ID", options->id, "the new server's id, as in its [cluster] id")->required();
  options->add->add_option("RAFT-ADDRESS", options->raft_address, "a.b.c.d:port where its Raft listens")->required();
  options->add->add_option("CLIENT-ADDRESS", options->client_address, "host:port where its clients connect")
      ->required();
  options->remove = command.add_subcommand("remove", "remove server ID from the cluster (then stop it)");
  options->remove->add_option("ID", options->id, "the server's id")->required();
  for (CLI::App* change : {options->add, options->remove}) {
    change
        ->add_option("-t,--timeout", options->timeout,
                     "stop following a change the leader is still making after DURATION (500ms, 5s, 5m; a bare "
                     "number is seconds; default: as long as it makes progress)")
        ->check(CLI::Validator(
            [](std::string& text) -> std::string {
              auto duration = parse_duration(text);
              return duration ? std::string() : duration.status().message();
            },
            "", "DURATION"))
        ->type_name("DURATION");
  }
  options->raise_fences = command.add_subcommand(
      "raise-fences", "raise the cluster's fences by N (after a restore from a backup copy); done once committed");
  options->raise_fences->add_option("N", options->by, "how much to raise the last fence by, 1 .. 2^53")->required();
  options->status->fallthrough();
  options->add->fallthrough();
  options->remove->fallthrough();
  options->raise_fences->fallthrough();
  command.require_subcommand(0, 1);
  return [options](const GlobalOptions& global) {
    if (options->status->parsed()) return status_command(global, options->json);
    if (options->add->parsed()) return change_command(global, *options, true);
    if (options->remove->parsed()) return change_command(global, *options, false);
    if (options->raise_fences->parsed()) return raise_fences_command(global, *options);
    print_error("cluster: status, add, remove or raise-fences is needed (see netsem cluster --help)");
    return kExitUsage;
  };
}

}  // namespace netsem::cli
