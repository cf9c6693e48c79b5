// Server (server.h): SIGHUP. The configuration file is read again (with the
// command line's overrides); what can change at run time takes effect (the
// defined semaphores, the networks, authentication, the TLS certificates,
// slow_wait_ms; in a cluster the leader replicates the limits), and what
// needs a restart is said.
#include "server/server.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/log.h"

namespace netsem::server {

void Server::reload_tls(const ServerConfig& loaded) {
  if (!tls_) {
    if (!loaded.tls_cert.empty()) spdlog::warn("SIGHUP: tls_cert is set; TLS starts after a restart");
    return;
  }
  if (loaded.tls_cert.empty() || loaded.tls_key.empty()) {
    spdlog::error("SIGHUP: tls_cert or tls_key is empty; TLS keeps the running certificates until a restart");
    return;
  }
  auto context = make_server_tls_context(loaded.tls_cert, loaded.tls_key, loaded.tls_client_ca);
  if (!context) {
    spdlog::error("SIGHUP: TLS: {}; keeping the running certificates", context.status().message());
    return;
  }
  tls_->set_context(std::move(*context));
  config_.tls_cert = loaded.tls_cert;
  config_.tls_key = loaded.tls_key;
  config_.tls_client_ca = loaded.tls_client_ca;
  spdlog::info("SIGHUP: TLS certificates read again from {} (client certificates {})", config_.tls_cert.string(),
               config_.tls_client_ca.empty() ? "not asked for" : "verified against " + config_.tls_client_ca.string());
}

void Server::reload() {
  if (config_file_.empty()) {
    spdlog::info("SIGHUP: running on embedded defaults, no configuration file to reload");
    return;
  }
  // The loop answers nobody while a reload runs: its time is logged (it is
  // linear in the number of names: a few seconds for a million).
  const auto began = std::chrono::steady_clock::now();
  auto loaded = load_server_config(config_file_);
  if (!loaded) {
    spdlog::error("SIGHUP: {}; keeping the running configuration", loaded.status().message());
    return;
  }
  for (const auto& warning : loaded->warnings) spdlog::warn("{}", warning);
  for (const auto& [option, value] : overrides_) {
    const auto* spec = find_server_option(option);
    if (auto status = spec->apply(*spec, value, *loaded); !status) {
      spdlog::error("SIGHUP: {}; keeping the running configuration", status.message());  // valid at start
      return;
    }
  }
  for (const auto& name : dispatcher_->reconfigure(loaded->semaphores)) {
    spdlog::warn("semaphore {} is listed in [semaphores] but was created by CREATE; it stays a created semaphore",
                 escape_for_log(name));
  }
  for (const auto option : options_needing_restart(config_, *loaded)) {
    spdlog::warn("SIGHUP: {} changed; it takes effect after a restart", option);
  }
  config_.semaphores = std::move(loaded->semaphores);
  config_.allowed_networks = std::move(loaded->allowed_networks);
  config_.allowed_networks_text = std::move(loaded->allowed_networks_text);
  config_.admin_networks = std::move(loaded->admin_networks);
  config_.admin_networks_text = std::move(loaded->admin_networks_text);
  if (http_backend_) http_backend_->set_access(config_.allowed_networks, config_.admin_networks);
  reload_auth(*loaded);
  reload_tls(*loaded);
  config_.slow_wait_ms = loaded->slow_wait_ms;
  if (table_) table_->set_slow_wait(std::chrono::milliseconds(config_.slow_wait_ms));
  // On the log the leader replicates the limits (Reconfigure).
  if (cluster_) cluster_->configure(config_);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  spdlog::info("SIGHUP: reloaded {} defined semaphores, allowed {}, admin {} ({} ms)", config_.semaphores.size(),
               config_.allowed_networks_text, config_.admin_networks_text, took.count());
}

void Server::reload_auth(ServerConfig& loaded) {
  config_.tokens_file = std::move(loaded.tokens_file);
  config_.ace_networks = std::move(loaded.ace_networks);
  config_.ace_networks_text = std::move(loaded.ace_networks_text);
  config_.ace_rights = std::move(loaded.ace_rights);
  config_.ace_rights_text = std::move(loaded.ace_rights_text);
  if (loaded.auth == config_.auth) return;
  const bool was_required = config_.auth.required();
  config_.auth = std::move(loaded.auth);
  verifier_->set_tokens(config_.auth.tokens);
  if (http_backend_) http_backend_->set_auth(config_.auth, verifier_.get());
  const std::size_t ended = dispatcher_->reauthorize(was_required);
  spdlog::info("SIGHUP: authentication {}: {} tokens, {} TLS subjects; {} sessions ended",
               config_.auth.required() ? "required" : "not required", config_.auth.tokens.size(),
               config_.auth.subjects.size(), ended);
}

}  // namespace netsem::server
