// ReadySet: one level-triggered epoll set, waited on through Asio.
#include "net/ready_set.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <asio/detail/reactor_op.hpp>

namespace netsem::server {

// The round operation on the set's descriptor, in Asio's reactor. Its
// perform step takes the set's ready events (epoll_wait(0)); done and
// exhausted when it took some, so that Asio neither performs it again nor
// re-arms the registration when it is queued anew; not done when there were
// none (a spurious wake-up: it stays queued). Completion hands over to
// ReadySet::round. The set owns it; a set destroyed while it is queued (its
// cancellation not yet run) leaves it to free itself when Asio completes or
// destroys it.
struct ReadySet::RoundOp final : asio::detail::reactor_op {
  explicit RoundOp(ReadySet* owner)
      : reactor_op(asio::error_code(), &RoundOp::perform_round, &RoundOp::complete_round), set(owner) {}

  static status perform_round(asio::detail::reactor_op* base) {
    auto* op = static_cast<RoundOp*>(base);
    if (op->set == nullptr) return done;
    int n = 0;
    do {
      n = ::epoll_wait(op->set->epoll_.get(), op->set->events_.data(), kMaxEvents, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return not_done;
    op->set->ready_ = n;
    return done_and_exhausted;
  }

  // `owner` is null when Asio destroys the operation instead of completing it.
  static void complete_round(void* owner, asio::detail::scheduler_operation* base, const asio::error_code&,
                             std::size_t) {
    auto* op = static_cast<RoundOp*>(base);
    ReadySet* const set = op->set;
    if (set == nullptr) {
      delete op;
      return;
    }
    set->op_queued_ = false;
    if (owner != nullptr) set->round(op->ec_);
  }

  ReadySet* set;
};

Result<std::unique_ptr<ReadySet>> ReadySet::open(asio::io_context& io) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0) {
    return Status(StatusCode::kIoError, std::string("cannot make an epoll set: ") + std::strerror(errno));
  }
  std::unique_ptr<ReadySet> set(new ReadySet(io, std::move(epoll)));
  if (const int error = set->reactor_.register_descriptor(set->epoll_.get(), set->watch_); error != 0) {
    return Status(StatusCode::kIoError, std::string("cannot watch an epoll set: ") + std::strerror(error));
  }
  return set;
}

ReadySet::ReadySet(asio::io_context& io, UniqueFd epoll)
    : epoll_(std::move(epoll)), reactor_(asio::use_service<asio::detail::reactor>(io)), op_(new RoundOp(this)) {
  reactor_.init_task();  // the scheduler runs the reactor (as Asio's own descriptor services ask)
}

ReadySet::~ReadySet() {
  if (watch_ != nullptr) {
    reactor_.deregister_descriptor(epoll_.get(), watch_, false);  // cancels the queued operation
    reactor_.cleanup_descriptor_data(watch_);
  }
  if (op_queued_) {
    op_->set = nullptr;  // completes (cancelled) or is destroyed later, and frees itself
  } else {
    delete op_;
  }
}

bool ReadySet::add(int fd, std::uint64_t key, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = key;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) == 0;
}

bool ReadySet::modify(int fd, std::uint64_t key, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = key;
  if (in_round_) {
    // The round ends with a re-arm, which looks at the set afresh.
    again_ = true;
    return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) == 0;
  }
  // Between rounds: a MOD of a socket the last round listed (still on the
  // set's ready list) wakes nobody even when it makes the socket ready; an
  // ADD does.
  epoll_event unused{};
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &unused) != 0) return false;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) == 0;
}

void ReadySet::remove(int fd) {
  epoll_event unused{};
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &unused);
}

void ReadySet::start(ReadyHandler on_ready, std::function<void()> on_round_end) {
  on_ready_ = std::move(on_ready);
  on_round_end_ = std::move(on_round_end);
  wait(true);
}

void ReadySet::stop() {
  stopped_ = true;
  if (op_queued_) reactor_.cancel_ops(epoll_.get(), watch_);
}

void ReadySet::wait(bool rearm) {
  if (stopped_) return;
  op_->ec_ = asio::error_code();
  op_queued_ = true;
  // Not speculative: Asio re-arms the registration (EPOLL_CTL_MOD), which
  // reports the set if anything in it is ready. Speculative: Asio performs
  // the step at once if an event came since the last one, else queues it
  // with no system call.
  reactor_.start_op(asio::detail::reactor::read_op, epoll_.get(), watch_, op_, false, !rearm);
}

void ReadySet::round(const asio::error_code& error) {
  if (error || stopped_) return;
  in_round_ = true;
  again_ = ready_ == kMaxEvents;  // more may be waiting in the set
  for (int i = 0; i < ready_; ++i) {
    if (on_ready_(events_[i].data.u64, events_[i].events)) again_ = true;
  }
  ready_ = 0;
  on_round_end_();
  in_round_ = false;
  wait(again_);
}

}  // namespace netsem::server
