// WaitFeedback: the line `netsem run` and `netsem wait` show while they wait
// (wait_feedback.h). The thread wakes once a second, makes at most one
// listing request (WAITERS on odd seconds, HOLDERS on even ones) and redraws.
#include "cli/wait_feedback.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <utility>
#include <vector>

#include "cli/cli.h"

namespace netsem::cli {

namespace {

// Holders named on the line; the others are counted.
constexpr std::size_t kLabelsShown = 3;
// Off a terminal (-v), a plain line at the second listing and then this often.
constexpr std::int64_t kPlainEverySeconds = 10;

void write_stderr(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

// The terminal's width, so that the line never wraps (a wrapped line cannot
// be rewritten with \r); 80 when unknown.
std::size_t terminal_width() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

// Cuts `text` to `width` code points (UTF-8 continuation bytes count none).
std::string cut(const std::string& text, std::size_t width) {
  std::size_t shown = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (shown++ == width) return text.substr(0, i);
  }
  return text;
}

}  // namespace

WaitFeedback::WaitFeedback(Client& client, std::string name, std::int64_t count, int verbosity)
    : client_(client),
      name_(std::move(name)),
      count_(count),
      terminal_(::isatty(STDERR_FILENO) == 1),
      plain_(!terminal_ && verbosity >= 1) {
  if (terminal_ || plain_) thread_ = std::thread([this] { loop(); });
}

WaitFeedback::~WaitFeedback() {
  stop();
}

void WaitFeedback::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (drawn_) {
    write_stderr("\r\033[K");
    drawn_ = false;
  }
}

std::string WaitFeedback::text(std::chrono::seconds waited) const {
  std::string line = "netsem: waiting " + std::to_string(waited.count()) + " s for " + std::to_string(count_) +
                     (count_ == 1 ? " permit of " : " permits of ") + name_;
  std::string detail = position_;
  if (!holders_.empty()) detail += (detail.empty() ? "" : "; ") + holders_;
  if (!detail.empty()) line += ": " + detail;
  return line;
}

void WaitFeedback::loop() {
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t tick = 1;; ++tick) {
    {
      std::unique_lock lock(mutex_);
      if (wake_.wait_until(lock, start + std::chrono::seconds(tick), [this] { return stopping_; })) return;
    }
    // The listings need a 1.1 server serving this name: not a `$` name, not
    // the fallback, not a 1.0 server (which would refuse them).
    const ClientStats stats = client_.stats();
    if (listings_served(stats, name_)) {
      if (tick % 2 == 1) {
        position_.clear();
        if (auto waiters = client_.waiters(name_)) {
          for (std::size_t i = 0; i < waiters->size(); ++i) {
            if ((*waiters)[i].session_id != stats.session_id) continue;
            position_ =
                "position " + std::to_string(i + 1) + " of " + std::to_string(waiters->size()) + " in the queue";
            break;
          }
        }
      } else {
        holders_.clear();
        if (auto holders = client_.holders(name_); holders && !holders->empty()) {
          holders_ = "held by ";
          for (std::size_t i = 0; i < holders->size() && i < kLabelsShown; ++i) {
            const HolderInfo& holder = (*holders)[i];
            if (i > 0) holders_ += ", ";
            holders_ += holder.label.empty() ? "session " + std::to_string(holder.session_id) : holder.label;
            if (holder.count != 1) holders_ += " (" + std::to_string(holder.count) + ")";
          }
          if (holders->size() > kLabelsShown) {
            holders_ += " and " + std::to_string(holders->size() - kLabelsShown) + " more";
          }
        }
      }
    }
    {
      // The wait may have ended during the listing: draw nothing after it.
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    const auto waited = std::chrono::floor<std::chrono::seconds>(std::chrono::steady_clock::now() - start);
    if (terminal_) {
      write_stderr("\r" + cut(text(waited), terminal_width() - 1) + "\033[K");
      drawn_ = true;
    } else if (tick % kPlainEverySeconds == 2 % kPlainEverySeconds) {
      write_stderr(text(waited) + "\n");
    }
  }
}

}  // namespace netsem::cli
