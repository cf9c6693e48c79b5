// A hostile handshake flood at netsemd's TLS port: connections that open and
// stall, that send the start of a TLS record and stall, or that send garbage
// instead of a ClientHello, while a plain session and a TLS session keep
// acquiring and releasing. Their round trips stay within a bound (the
// handshakes run on the TLS thread, never on the event loop), the server
// holds at most 64 handshakes' descriptors whatever the flood (the rest wait
// in the listen queue), its memory does not grow with the flood, and a new
// TLS client is served once the flood stops.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "client/local_semaphores.h"
#include "netsem/client.h"
#include "tls_support.h"

namespace netsem::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::size_t open_descriptors(pid_t pid) {
  std::size_t count = 0;
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++count;
  }
  return count;
}

std::int64_t rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) return std::stoll(line.substr(6));
  }
  return -1;
}

TEST(TlsHostile, AHandshakeFloodNeverDelaysGrantsAndCostsBoundedDescriptors) {
  Pki pki;
  TempDir scratch;
  auto tls =
      start_tls_server(tls_server_options(pki) + "tls_handshake_timeout_ms = 1000\n", "canary = 1\ntls-canary = 1\n");
  ASSERT_NE(tls.tls_port, 0);
  const pid_t pid = tls.server->pid();

  // Two canaries, established before the flood: a plain session and a TLS one.
  auto plain = Client::connect(tls.server->port());
  ASSERT_NE(plain, nullptr);
  ASSERT_EQ(plain->request("h HELLO 1 canary").rfind("h OK netsem 1.1 ", 0), 0u);
  auto tls_client = netsem::Client::create(tls_client_options(pki, tls.tls_port, scratch.path() / "local"));
  ASSERT_TRUE(tls_client.has_value());
  ASSERT_TRUE((*tls_client)->ping().has_value());
  const std::size_t descriptors_before = open_descriptors(pid);
  const std::int64_t rss_before = rss_kib(pid);

  std::atomic<bool> stop{false};
  Clock::duration plain_slowest{};
  Clock::duration tls_slowest{};
  int plain_rounds = 0;
  int tls_rounds = 0;
  std::thread plain_thread([&] {
    while (!stop.load()) {
      const auto began = Clock::now();
      const auto acquired = plain->request("a ACQUIRE canary 1 0");
      const auto released = plain->request("r RELEASE canary");
      plain_slowest = std::max(plain_slowest, Clock::now() - began);
      if (acquired.rfind("a OK ", 0) != 0 || released != "r OK 1") {
        ADD_FAILURE() << acquired << " / " << released;
        return;
      }
      ++plain_rounds;
    }
  });
  std::thread tls_thread([&] {
    while (!stop.load()) {
      const auto began = Clock::now();
      auto permit = (*tls_client)->acquire("tls-canary", {.timeout = 0ms});
      if (!permit.has_value()) {
        ADD_FAILURE() << permit.status().to_string();
        return;
      }
      const Status released = permit->release();
      tls_slowest = std::max(tls_slowest, Clock::now() - began);
      if (!released.is_ok()) {
        ADD_FAILURE() << released.to_string();
        return;
      }
      ++tls_rounds;
    }
  });

  // The flood: 150 connections that stall (half after the header of a TLS
  // record announcing 16 KiB), and 150 that send garbage, in waves.
  std::vector<std::unique_ptr<Client>> hostile;
  std::size_t most_descriptors = 0;
  const std::string garbage(1024, '\xff');
  const std::string record_start("\x16\x03\x01\x40\x00", 5);
  const auto flood_end = Clock::now() + 2500ms;
  for (int wave = 0; Clock::now() < flood_end; ++wave) {
    for (int i = 0; i < 30; ++i) {
      auto peer = Client::connect(tls.tls_port);
      if (!peer) continue;  // the listen queue is full: the flood is refused by the kernel
      if (i % 3 == 1) ::send(peer->fd(), record_start.data(), record_start.size(), MSG_NOSIGNAL);
      if (i % 3 == 2) ::send(peer->fd(), garbage.data(), garbage.size(), MSG_NOSIGNAL);
      if (hostile.size() < 300) hostile.push_back(std::move(peer));
    }
    most_descriptors = std::max(most_descriptors, open_descriptors(pid));
    std::this_thread::sleep_for(50ms);  // a wave every 50 ms: the flood's pace, not a synchronisation
  }
  stop = true;
  plain_thread.join();
  tls_thread.join();

  const auto ms = [](Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::microseconds>(d).count() / 1000.0;
  };
  std::printf(
      "flood: %zu hostile connections kept; canaries: plain %d rounds (slowest %.1f ms), TLS %d rounds "
      "(slowest %.1f ms); server descriptors %zu before, at most %zu during\n",
      hostile.size(), plain_rounds, ms(plain_slowest), tls_rounds, ms(tls_slowest), descriptors_before,
      most_descriptors);
  // The canaries went on, each round trip within the bound.
  EXPECT_GT(plain_rounds, 20);
  EXPECT_GT(tls_rounds, 20);
  EXPECT_LT(plain_slowest, 500ms) << std::chrono::duration_cast<std::chrono::milliseconds>(plain_slowest).count();
  EXPECT_LT(tls_slowest, 500ms) << std::chrono::duration_cast<std::chrono::milliseconds>(tls_slowest).count();
  // At most 64 handshakes (and refusals) hold a descriptor, beside the
  // sessions that were there before (and a few of the server's own files).
  EXPECT_LE(most_descriptors, descriptors_before + 64 + 8) << "before: " << descriptors_before;
  // Memory does not grow with the flood (a few MiB of slack for the
  // allocator and the log).
  EXPECT_LT(rss_kib(pid) - rss_before, 16 * 1024) << "before " << rss_before << " KiB";
  EXPECT_TRUE(tls.server->wait_for_log("more failed since the last line")) << "failures are logged rate-limited";

  // Once the flood stops, a new TLS client is served.
  hostile.clear();
  const auto began = Clock::now();
  auto late = netsem::Client::create(tls_client_options(pki, tls.tls_port, scratch.path() / "local"));
  ASSERT_TRUE(late.has_value());
  const auto pong = (*late)->ping();
  EXPECT_TRUE(pong.has_value()) << pong.status().to_string();
  EXPECT_LT(Clock::now() - began, 3s);
  (void)client::LocalSemaphores(scratch.path() / "local").remove_all();
}

}  // namespace
}  // namespace netsem::testing
