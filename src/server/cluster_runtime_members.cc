// ClusterRuntime (cluster_runtime.h): membership. The leader's CLUSTER ADD
// (the secret check, SetMember, a spare, then a voter), REMOVE (the live
// majority check, then the removed server told) and FENCES; the members'
// client addresses (the server.N lines overridden by the replicated ones,
// seeded and taken back by the leader); this server's own removal.
#include "server/cluster_runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "replication/entry.h"

namespace netsem::server {

bool ClusterRuntime::ignores_removal(const cluster::RemovalNotice& told, const cluster::ClusterStatus& now) const {
  const bool member = std::any_of(now.configuration.begin(), now.configuration.end(),
                                  [this](const raft::ServerInfo& server) { return server.id == id_; });
  // A server that joins and was never in a configuration, or one added
  // back since (a newer configuration holds it), is not stopped.
  if (!now.configuration.empty() && !(member && now.configuration_index > told.index)) return false;
  spdlog::info("cluster: server {} says this server was removed at index {}; ignored: {}", told.from, told.index,
               now.configuration.empty()
                   ? "it is in no configuration yet"
                   : "its configuration of index " + std::to_string(now.configuration_index) + " holds it");
  return true;
}

void ClusterRuntime::removed_from_cluster(std::uint64_t index, const std::string& how) {
  if (removed_ || stopped_) return;
  removed_ = true;
  spdlog::warn("this server (id {}) was removed from the cluster's configuration at index {}{}; stopping", id_, index,
               how);
  if (callbacks_.removed) callbacks_.removed();
}

void ClusterRuntime::tell_removed(std::uint64_t id) {
  const auto target = client_addresses_.find(id);
  const auto own = client_addresses_.find(id_);
  if (target == client_addresses_.end()) return;
  const auto local = own == client_addresses_.end() ? std::nullopt : cluster::split_host_port(own->second);
  const std::uint64_t index = node_->status().configuration_index;
  cluster::send_peer_line(io_, local ? local->first : std::string(), target->second,
                          cluster::peer_removal_notice(id_, secret_, id, index), [id, index](const Status& sent) {
                            if (sent) {
                              spdlog::info("cluster: told server {} it was removed (at index {})", id, index);
                            } else {
                              spdlog::warn(
                                  "cluster: could not tell server {} it was removed ({}): it goes on as a candidate "
                                  "until it is stopped",
                                  id, sent.message());
                            }
                          });
}

void ClusterRuntime::refresh_members() {
  std::map<std::uint64_t, std::string> merged = configured_;
  for (const auto& [member, address] : replica_.members()) merged[member] = address;
  if (merged == client_addresses_) return;
  for (const auto& [member, address] : merged) {
    const auto old = client_addresses_.find(member);
    if (old == client_addresses_.end() || old->second != address) {
      spdlog::info("cluster: server {} answers clients at {}", member, address);
      if (forwarder_) forwarder_->set_address(member, address);
    }
  }
  for (const auto& [member, address] : client_addresses_) {
    if (!merged.contains(member) && forwarder_) forwarder_->set_address(member, "");
  }
  client_addresses_ = std::move(merged);
}

void ClusterRuntime::seed_members(const cluster::ClusterStatus& now) {
  if (now.term != seeded_term_) {
    seeded_term_ = now.term;
    seeded_.clear();
  }
  for (const raft::ServerInfo& server : now.configuration) {
    const auto configured = configured_.find(server.id);
    if (configured == configured_.end() || replica_.members().contains(server.id)) continue;
    if (const auto sent = seeded_.find(server.id); sent != seeded_.end() && sent->second == configured->second) {
      continue;  // submitted in this term: pending until applied
    }
    seeded_[server.id] = configured->second;
    submit(replication::SetMember{server.id, configured->second});
  }
}

// A client address in the replicated members whose id is in no
// configuration is taken back by the leader: the ADD that replicated it was
// refused by libraft (another member's Raft address) or ended without the
// server joining, or a REMOVE answered TIMEOUT (the leader lost its
// leadership) took effect all the same, and no leader submitted the
// RemoveMember. Left, it is a member to the peer links, the PEER hello
// checks and CLUSTER STATUS's client_addresses, though it is none.
//
// Why this cannot undo an ADD in progress: an id is taken back only when
// neither this leader's latest configuration (committed or only appended:
// libraft's) nor a change in progress on this leader (changing_) has it.
// An ADD on a previous leader makes the server a member only through a
// configuration entry; one that is not in this leader's log never commits
// (Raft: a leader's log holds every entry that can commit while it leads,
// and a later leader holds the take-back if it commits it). One that is in
// its log is its latest configuration, and the id is spared. A later ADD of
// the same id, on this leader or a later one, replicates its SetMember
// after the take-back in the log, so the address it sets stays. That is why
// the take-back goes through ClusterNode::propose_as_leader, which never
// forwards it nor sends it again: a copy of it reaching a later leader
// after that leader's ADD would undo it. (The previous leader's SetMember
// is sent again until applied, and may come after the take-back: it is then
// taken back again, as member_sets_ tells.) Proposed once per term and
// SetMember applied, so a pending one is not proposed twice.
void ClusterRuntime::take_back_addresses(const cluster::ClusterStatus& now) {
  if (now.term != taken_back_term_) {
    taken_back_term_ = now.term;
    taken_back_.clear();
  }
  for (const auto& [id, address] : replica_.members()) {
    if (changing_.contains(id)) continue;
    if (std::any_of(now.configuration.begin(), now.configuration.end(),
                    [id](const raft::ServerInfo& server) { return server.id == id; })) {
      continue;
    }
    const std::uint64_t sets = member_sets_[id];
    if (const auto sent = taken_back_.find(id); sent != taken_back_.end() && sent->second == sets) continue;
    taken_back_[id] = sets;
    spdlog::info("cluster: server {} is in no configuration: taking back its client address {}", id, address);
    if (auto proposed = node_->propose_as_leader(replication::RemoveMember{id}); !proposed) {
      spdlog::warn("cluster: taking back server {}'s client address: {}", id, proposed.to_string());
    }
  }
}

Status ClusterRuntime::leads_now(const cluster::ClusterStatus& now) const {
  if (now.role == raft::Role::kLeader) return Status::ok();
  if (now.leader_id == 0) {
    return Status(StatusCode::kUnavailable,
                  fmt::format("no leader now (none known for {} s); retry", leaderless_ms(now) / 1000));
  }
  return Status(StatusCode::kUnavailable, "not the leader; the leader is server " + std::to_string(now.leader_id) +
                                              " at " + now.leader_client_address);
}

void ClusterRuntime::change_membership(MembershipChange change, std::function<void(Status)> done) {
  change_membership(std::move(change), std::move(done), false);
}

Status ClusterRuntime::secret_check_refusal(const MembershipChange& change, std::string_view secret,
                                            std::uint64_t leader, std::string_view nonce,
                                            const Result<std::string>& answer) {
  const std::string server = "server " + std::to_string(change.id) + " at " + change.client_address;
  if (answer.status().code() == StatusCode::kUnavailable) {
    // Never added unconfirmed (audit27 2b): a server that does not run
    // could not catch up anyway, and one whose client port the leader
    // cannot reach (a mistyped port, a firewall) would become a voter
    // whose secret nobody checked, and the removal notice would later go
    // to that address.
    return Status(StatusCode::kInvalidArgument,
                  server + " could not be asked whether it holds the cluster secret (" +
                      std::string(answer.status().message()) + "): start it (with join = on) and check that " +
                      change.client_address + " is its client address, reachable from the leader; nothing was changed");
  }
  const Result<cluster::ServerId> proven =
      answer ? cluster::verify_secret_proof(*answer, secret, leader, change.id, nonce, change.client_address)
             : Result<cluster::ServerId>(answer.status());
  if (proven && *proven == change.id) return Status::ok();
  if (proven) {
    return Status(StatusCode::kInvalidArgument,
                  "the server at " + change.client_address + " is server " + std::to_string(*proven) + ", not server " +
                      std::to_string(change.id) + " (its [cluster] id); nothing was changed");
  }
  std::string why;
  if (!answer) {
    why = std::string(answer.status().message()) +
          "): it has no server.N line for this server, or it runs a netsemd older than the secret challenge (its "
          "log then says 'refused a peer link ... wrong secret'), or it is no netsemd";
  } else if (proven.status().code() == StatusCode::kDenied) {
    why = "its proof does not match): its secret_file is not the cluster's, or its own server." +
          std::to_string(change.id) + " line gives another client address than " + change.client_address +
          " (the proof binds the address), or it runs a netsemd of another secret check";
  } else {
    why = "it answered '" + answer->substr(0, 80) + "', no proof): it is no netsemd of this version";
  }
  return Status(StatusCode::kInvalidArgument,
                server + " did not confirm the cluster secret (" + why + "; nothing was changed");
}

void ClusterRuntime::change_membership(MembershipChange change, std::function<void(Status)> done, bool secret_checked) {
  const auto fail = [this, &done](Status why) { post([done, why = std::move(why)] { done(why); }); };
  if (stopped_ || !node_) return fail(Status(StatusCode::kShutdown, "the server is stopping"));
  const cluster::ClusterStatus now = node_->status();
  if (Status leads = leads_now(now); !leads) return fail(std::move(leads));
  const auto found = std::find_if(now.configuration.begin(), now.configuration.end(),
                                  [&change](const raft::ServerInfo& server) { return server.id == change.id; });
  const bool member = found != now.configuration.end();
  const std::uint64_t id = change.id;
  if (changing_.contains(id)) {
    return fail(Status(StatusCode::kUnavailable, "a change of server " + std::to_string(id) + " is still running"));
  }
  // From here until `done`, its client address is not taken back
  // (take_back_addresses): the REMOVE's notice needs it, the ADD sets it.
  const auto track = [this, id, &done] {
    changing_.insert(id);
    done = [this, id, done = std::move(done)](Status outcome) {
      changing_.erase(id);
      done(std::move(outcome));
    };
  };
  if (!change.add) {
    if (!member) return fail(Status(StatusCode::kNotFound, "server " + std::to_string(id) + " is not a member"));
    if (Status live =
            cluster::remove_keeps_a_live_majority(now, id_, id, election_timeout_ms_, node_->snapshot_trailing());
        !live) {
      spdlog::warn("cluster: not removing server {}: {}", id, live.message());
      return fail(std::move(live));
    }
    spdlog::info("cluster: removing server {}", id);
    track();
    node_->raft().remove_server(id, [this, id, done](Status outcome) {
      post([this, id, done, outcome] {
        if (outcome) {
          // Its client address is taken back once `done` ran
          // (take_back_addresses, at the turn's tick).
          spdlog::info("cluster: server {} removed", id);
          if (id != id_ && !stopped_ && node_) tell_removed(id);
        } else {
          spdlog::warn("cluster: removing server {}: {}", id, outcome.to_string());
        }
        done(outcome);
      });
    });
    return;
  }
  // A spare at the same Raft address is an ADD that did not finish (its
  // leader lost the leadership while the server caught up): it goes on
  // from the promotion.
  const bool unfinished = member && found->role == raft::ServerRole::kSpare && found->address == change.raft_address;
  if (member && !unfinished) {
    return fail(Status(StatusCode::kAlreadyExists, "server " + std::to_string(id) + " is a member already"));
  }
  // As a server.<id> line is checked: no host name, no 0.0.0.0 (an audit
  // added both, and the server stayed a spare).
  if (auto checked = check_member_addresses(change.raft_address, change.client_address); !checked) {
    return fail(checked);
  }
  const replication::SetMember set{id, change.client_address};
  if (auto checked = replication::check_command(set); !checked) {
    return fail(Status(StatusCode::kInvalidArgument, "bad client address (host:port): " + checked.message()));
  }
  if (auto parsed = raft::parse_servers(std::to_string(id) + "@" + change.raft_address); !parsed) {
    return fail(Status(StatusCode::kInvalidArgument, "bad Raft address (a.b.c.d:port): " + parsed.status().message()));
  }
  if (!secret_checked) {
    // The server must hold the cluster secret before anything commits: one
    // with another secret would catch up and vote over Raft (which knows no
    // secret) while every server refuses its peer links, and its removal
    // notice later (audit25: a "healthy" voter that could not be removed).
    const auto own = client_addresses_.find(id_);
    const auto local = own == client_addresses_.end() ? std::nullopt : cluster::split_host_port(own->second);
    spdlog::info("cluster: asking server {} at {} whether it holds the cluster secret", id, change.client_address);
    const std::string address = change.client_address;
    // A fresh nonce: the server proves it holds the secret without either
    // side sending it (cluster::peer_secret_challenge).
    Result<std::string> nonce = cluster::new_peer_nonce();
    if (!nonce) return fail(nonce.status());
    cluster::ask_peer_line(
        io_, local ? local->first : std::string(), address, cluster::peer_secret_challenge(id_, id, *nonce),
        [this, change = std::move(change), done = std::move(done), nonce = *nonce](Result<std::string> answer) {
          post([this, change, done, nonce, answer = std::move(answer)] {
            if (Status refused = secret_check_refusal(change, secret_, id_, nonce, answer); !refused) {
              spdlog::warn("cluster: not adding server {}: {}", change.id, refused.message());
              return done(refused);
            }
            change_membership(change, done, true);
          });
        });
    return;
  }
  spdlog::info("cluster: adding server {} (raft {}, clients {}){}", id, change.raft_address, change.client_address,
               unfinished ? ": a spare already, promoting it" : "");
  // Its client address first, so that the others let its peer link in and
  // name it; then Raft's: a spare, then a voter once it caught up. Should
  // libraft refuse it (another member has that Raft address) or the server
  // not join, the address is taken back once `done` ran.
  track();
  submit(set);
  if (unfinished) return promote(id, std::move(done));
  node_->raft().add_server(id, change.raft_address, [this, id, done](Status added) {
    post([this, id, done, added] {
      if (!added || stopped_ || !node_) {
        spdlog::warn("cluster: adding server {}: {}", id, added ? "stopped" : added.to_string());
        done(added ? Status(StatusCode::kShutdown, "the server is stopping") : added);
        return;
      }
      promote(id, done);
    });
  });
}

void ClusterRuntime::raise_fences(std::uint64_t by, std::function<void(Result<std::uint64_t>)> done) {
  const auto fail = [this, &done](Status why) { post([done, why = std::move(why)] { done(why); }); };
  if (stopped_ || !node_) return fail(Status(StatusCode::kShutdown, "the server is stopping"));
  const cluster::ClusterStatus now = node_->status();
  if (Status leads = leads_now(now); !leads) return fail(std::move(leads));
  if (raise_nonce_ == 0) raise_nonce_ = std::random_device()() | (std::uint64_t{std::random_device()()} << 32);
  const std::uint64_t nonce = ++raise_nonce_;
  if (Status proposed = node_->propose_as_leader(replication::RaiseFences{by, id_, nonce}); !proposed) {
    return fail(proposed);
  }
  spdlog::info("cluster: raising the fences by {} (term {})", by, now.term);
  raises_.emplace(nonce, std::make_pair(now.term, std::move(done)));
}

void ClusterRuntime::promote(std::uint64_t id, std::function<void(Status)> done) {
  node_->raft().assign(id, raft::ServerRole::kVoter, [this, id, done](Status assigned) {
    post([this, id, done, assigned] {
      if (assigned) {
        spdlog::info("cluster: server {} added as a voter", id);
        return done(assigned);
      }
      if (assigned.code() != StatusCode::kTimeout || stopped_ || !node_) {
        // Not the leader any more, or stopping: it may stay a spare (CLUSTER
        // STATUS shows it; an ADD again on the leader promotes it).
        spdlog::warn("cluster: server {} is a spare, not a voter: {}", id, assigned.to_string());
        return done(assigned);
      }
      // libraft gave up waiting for it (nothing answers at its Raft
      // address, or it cannot keep up): the spare goes, so that the
      // configuration is the one before the ADD.
      spdlog::warn("cluster: server {} did not catch up with the log; removing it: {}", id, assigned.message());
      node_->raft().remove_server(id, [this, id, done](Status removed) {
        post([this, id, done, removed] {
          const std::string what = "server " + std::to_string(id) + " did not catch up with the log within 5 s";
          if (!removed) {
            spdlog::warn("cluster: server {} stays a spare: {}", id, removed.to_string());
            return done(Status(StatusCode::kTimeout,
                               what + "; it stays a spare (CLUSTER REMOVE it): " + std::string(removed.message())));
          }
          spdlog::info("cluster: server {} removed: it did not catch up", id);
          done(Status(StatusCode::kTimeout, what + "; removed again"));
        });
      });
    });
  });
}

}  // namespace netsem::server
