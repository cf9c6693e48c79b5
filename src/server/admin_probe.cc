// classify_probe_line (admin_probe.h): the request parser decides what a
// line asks, so a probe's line is judged as the dispatcher will read it.
#include "server/admin_probe.h"

#include "protocol/requests.h"

namespace netsem::server {

ProbeLine classify_probe_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  protocol::Request request;
  protocol::ParseError error;
  switch (protocol::parse_request(line, request, error)) {
    case protocol::ParseStatus::kEmpty:
      return ProbeLine::kHandshake;
    case protocol::ParseStatus::kError:
      return ProbeLine::kRefused;
    case protocol::ParseStatus::kRequest:
      break;
  }
  using protocol::Verb;
  switch (request.verb) {
    case Verb::kPing:
    case Verb::kLease:
    case Verb::kOption:
    case Verb::kAuth:
    case Verb::kQuit:
      return ProbeLine::kHandshake;
    case Verb::kStats:
      return ProbeLine::kAsk;
    case Verb::kCluster:
      return request.cluster_action == protocol::ClusterAction::kStatus ? ProbeLine::kAsk : ProbeLine::kRefused;
    default:
      return ProbeLine::kRefused;
  }
}

}  // namespace netsem::server
