// The figures of a netsemd in a cluster (issue 16, docs/replication.md):
// this server's place in Raft (role, term, leader), how far its log and its
// replica have come (commit index, applied index, lag) and the members; on
// the leader, how far each other member is behind. They are not rows of the
// field table (fields.h): a single server has none of them and its STATS
// line stays as it was. In a cluster, STATS leaves out the journal's fields
// (there is no journal: the Raft log is the durable record) and ends with a
// `cluster` object instead (to_json's `cluster` argument, render.h), and
// GET /metrics adds the netsem_cluster_* series (cluster_prometheus).
//
// JSON (compact: STATS is one line of at most 4096 bytes, tested with every
// number at its largest): {"id":1,"role":"leader","term":3,"leader_id":1,
// "commit_index":9,"applied_index":9,"last_index":9,"lag":0,"members":3,
// "voters":3,"follower_lag":{"2":0,"3":1}}. follower_lag is the leader's
// only (empty elsewhere), at most kMaxFollowersInStats members by id; the
// Prometheus series and `CLUSTER STATUS` name every member.
//
// Thread safety: values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "stats/histogram.h"

namespace netsem::stats {

struct FollowerProgress {
  std::uint64_t id = 0;
  std::uint64_t match_index = 0;  // the last entry the leader knows it holds
  std::uint64_t lag = 0;          // the leader's last index - match_index
};

struct ClusterFigures {
  std::uint64_t id = 0;              // this server
  std::string role = "unavailable";  // "follower", "candidate", "leader", "unavailable"
  std::uint64_t term = 0;
  std::uint64_t leader_id = 0;              // 0: unknown
  std::uint64_t commit_index = 0;           // the last entry known committed
  std::uint64_t applied_index = 0;          // the last entry this server's replica (the one it answers from) applied
  std::uint64_t last_index = 0;             // the last entry in this server's log
  std::uint64_t lag = 0;                    // commit_index - applied_index (0 when not behind)
  std::uint64_t members = 0;                // servers in the Raft configuration (any role)
  std::uint64_t voters = 0;                 // of which voters
  std::vector<FollowerProgress> followers;  // the leader's: every other member, by id
  // Since start, while this server led: each batch of commands' commit (its
  // proposal to libraft until it was committed and applied on the raft
  // thread), in microseconds, and the commands each batch carried.
  Histogram commit_us;
  Histogram batch_commands;
  // Since start, while this server led: the barriers it appended to tell the
  // followers of a commit at once (raft::NodeStatus::commit_pushes).
  std::uint64_t commit_pushes = 0;
  // Connections to the Raft port refused since start, by reason ("host":
  // from no member's host nor raft_allowed_networks; "id": a claimed id that
  // may not come from its source; "handshake": not libraft's; "timeout": no
  // handshake in time; "pending": too many waiting for theirs; "streams":
  // too many of its host open with libraft already), every reason
  // listed (raft::NodeStatus::connections_refused).
  std::vector<std::pair<std::string, std::uint64_t>> raft_connections_refused;
  // The next segments of the Raft log that could not be allocated for lack
  // of space since start (raft::ZeroFilledSegments::no_space).
  std::uint64_t segment_no_space = 0;
  // Peer lines and frames on the client port refused since start, by kind
  // ("removal_notice", "secret_check", "link_hello": a hello;
  // "link_set_up": too many links in set-up; "link_proof": a link whose
  // set-up failed; "link_frame": a set-up link closed for a frame that did
  // not open or a malformed one), every kind listed (ClusterRuntime).
  std::vector<std::pair<std::string, std::uint64_t>> peer_lines_refused;
};

// The most followers STATS lists in follower_lag (the line's bound).
inline constexpr std::size_t kMaxFollowersInStats = 8;

// The `cluster` object of STATS, one line.
std::string cluster_json(const ClusterFigures& figures);

// The netsem_cluster_* series of GET /metrics (text format 0.0.4): gauges
// netsem_cluster_server_id, netsem_cluster_role{cluster_role="leader"} 1,
// netsem_cluster_term, netsem_cluster_leader_id,
// netsem_cluster_commit_index, netsem_cluster_applied_index,
// netsem_cluster_last_index, netsem_cluster_lag, netsem_cluster_members,
// netsem_cluster_voters, and on the leader netsem_cluster_follower_lag and
// netsem_cluster_follower_match_index with a label id="N" per member;
// histograms netsem_cluster_commit_seconds and netsem_cluster_batch_commands
// (empty on a server that never led), and the counter
// netsem_cluster_commit_pushes_total (0 on a server that never led), and
// netsem_cluster_raft_connections_refused_total{reason="..."} per reason,
// netsem_cluster_segment_no_space_total, and
// netsem_cluster_peer_lines_refused_total{kind="..."} per kind.
std::string cluster_prometheus(const ClusterFigures& figures);

}  // namespace netsem::stats
