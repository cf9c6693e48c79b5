// The cluster figures' writers (cluster_figures.h): the STATS object through
// nlohmann-json (ordered, as the rest of STATS) and the Prometheus series.
#include "stats/cluster_figures.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>

#include "stats/render.h"

namespace netsem::stats {

std::string cluster_json(const ClusterFigures& figures) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  json["id"] = figures.id;
  json["role"] = figures.role;
  json["term"] = figures.term;
  json["leader_id"] = figures.leader_id;
  json["commit_index"] = figures.commit_index;
  json["applied_index"] = figures.applied_index;
  json["last_index"] = figures.last_index;
  json["lag"] = figures.lag;
  json["members"] = figures.members;
  json["voters"] = figures.voters;
  nlohmann::ordered_json lags = nlohmann::ordered_json::object();
  std::vector<FollowerProgress> followers = figures.followers;
  std::sort(followers.begin(), followers.end(),
            [](const FollowerProgress& a, const FollowerProgress& b) { return a.id < b.id; });
  for (std::size_t i = 0; i < followers.size() && i < kMaxFollowersInStats; ++i) {
    lags[std::to_string(followers[i].id)] = followers[i].lag;
  }
  json["follower_lag"] = std::move(lags);
  return json.dump();
}

namespace {

// The HELP and TYPE lines of netsem_cluster_<name>.
void header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out += "# HELP netsem_cluster_";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE netsem_cluster_";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void gauge(std::string& out, std::string_view name, std::string_view help) {
  header(out, name, help, "gauge");
}

void sample(std::string& out, std::string_view name, std::uint64_t value, const std::string& labels = "") {
  out += "netsem_cluster_";
  out += name;
  out += labels;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

// A counter's series, one per value of `label`: NAME{LABEL="value"} count.
void samples_by(std::string& out, std::string_view name, std::string_view label,
                const std::vector<std::pair<std::string, std::uint64_t>>& counts) {
  for (const auto& [value, count] : counts) {
    sample(out, name, count, "{" + std::string(label) + "=\"" + value + "\"}");
  }
}

// A histogram's series; `decimals` scales its values (6: microseconds as seconds).
void histogram(std::string& out, std::string_view name, std::string_view help, const Histogram& h, int decimals) {
  header(out, name, help, "histogram");
  append_histogram(out, "netsem_cluster_" + std::string(name), h, decimals);
}

}  // namespace

std::string cluster_prometheus(const ClusterFigures& figures) {
  std::string out;
  gauge(out, "server_id", "This server's id in the cluster.");
  sample(out, "server_id", figures.id);
  gauge(out, "role", "This server's Raft role: 1 for the role named by the label.");
  std::string role_label = "{cluster_role=\"";
  append_label_value(role_label, figures.role);
  role_label += "\"}";
  sample(out, "role", 1, role_label);
  gauge(out, "term", "This server's current Raft term.");
  sample(out, "term", figures.term);
  gauge(out, "leader_id", "The id of the leader this server knows (0: none known).");
  sample(out, "leader_id", figures.leader_id);
  gauge(out, "commit_index", "The last log index this server knows committed.");
  sample(out, "commit_index", figures.commit_index);
  gauge(out, "applied_index", "The last log index applied to the replica this server answers from.");
  sample(out, "applied_index", figures.applied_index);
  gauge(out, "last_index", "The last index in this server's log.");
  sample(out, "last_index", figures.last_index);
  gauge(out, "lag", "Entries committed but not yet applied to the replica this server answers from.");
  sample(out, "lag", figures.lag);
  gauge(out, "members", "Servers in the Raft configuration, any role.");
  sample(out, "members", figures.members);
  gauge(out, "voters", "Voting servers in the Raft configuration.");
  sample(out, "voters", figures.voters);
  if (!figures.followers.empty()) {
    gauge(out, "follower_lag", "On the leader: entries of its log a member is not known to hold yet.");
    for (const FollowerProgress& follower : figures.followers) {
      sample(out, "follower_lag", follower.lag, "{id=\"" + std::to_string(follower.id) + "\"}");
    }
    gauge(out, "follower_match_index", "On the leader: the last log index a member is known to hold.");
    for (const FollowerProgress& follower : figures.followers) {
      sample(out, "follower_match_index", follower.match_index, "{id=\"" + std::to_string(follower.id) + "\"}");
    }
  }
  histogram(out, "commit_seconds",
            "While this server led: how long each batch of commands took from its proposal to its commit and apply "
            "(the leader's write and sync, a majority's, the round trip), since start.",
            figures.commit_us, 6);
  histogram(out, "batch_commands",
            "While this server led: the commands each batch (one Raft log entry) carried, since start.",
            figures.batch_commands, 0);
  header(out, "commit_pushes_total",
         "While this server led: the empty entries (barriers) it appended to tell the followers of a commit at once, "
         "because a follower's client waited for it, since start.",
         "counter");
  sample(out, "commit_pushes_total", figures.commit_pushes);
  header(out, "raft_connections_refused_total",
         "Connections to this server's Raft port refused since start, by reason: host (from the host of no server "
         "it knows, nor from raft_allowed_networks), id (its handshake claimed a server whose host is not its "
         "source), handshake (not libraft's), timeout (no handshake in time), pending (too many waited for "
         "theirs), streams (too many of its host were open with libraft already).",
         "counter");
  samples_by(out, "raft_connections_refused_total", "reason", figures.raft_connections_refused);
  header(out, "segment_no_space_total",
         "Segments of the Raft log this server could not allocate ahead for lack of space on its disk, since start "
         "(each logged, a warning): once the segment in use is full and space is still short, a write fails and "
         "the server stops.",
         "counter");
  sample(out, "segment_no_space_total", figures.segment_no_space);
  header(out, "peer_lines_refused_total",
         "Peer lines on the client port refused since start, by kind: removal_notice, secret_check, link_hello "
         "(a peer link's hello), link_set_up (too many links in set-up), link_proof (a link whose set-up failed), "
         "link_frame (a set-up link closed for a frame that did not open: altered, replayed or dropped on the "
         "way).",
         "counter");
  samples_by(out, "peer_lines_refused_total", "kind", figures.peer_lines_refused);
  return out;
}

}  // namespace netsem::stats
