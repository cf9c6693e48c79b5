// classify_probe_line and opens_admin_probe (admin_probe.h): the request
// parser decides what a line asks, so a probe's line is judged as the
// dispatcher will read it.
#include "core/admin_probe.h"

#include "protocol/requests.h"

namespace netsem::server {

namespace {

// The line parsed: kEmpty, kError or kRequest (then `request` is filled).
protocol::ParseStatus parse_probe_line(std::string_view line, protocol::Request& request) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  protocol::ParseError error;
  return protocol::parse_request(line, request, error);
}

}  // namespace

ProbeLine classify_probe_line(std::string_view line) {
  protocol::Request request;
  switch (parse_probe_line(line, request)) {
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

bool opens_admin_probe(std::string_view line) {
  protocol::Request request;
  if (parse_probe_line(line, request) != protocol::ParseStatus::kRequest) return false;
  return request.verb == protocol::Verb::kLease ||
         (request.verb == protocol::Verb::kCluster && request.cluster_action == protocol::ClusterAction::kStatus);
}

}  // namespace netsem::server
