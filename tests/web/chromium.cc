// Chromium over --remote-debugging-pipe (see chromium.h). The protocol's
// messages used: Target.createTarget / attachToTarget (flat sessions, so a
// command names its tab by "sessionId"), Page.enable / navigate /
// loadEventFired / captureScreenshot / getLayoutMetrics /
// javascriptDialogOpening / handleJavaScriptDialog, Runtime.enable /
// evaluate / exceptionThrown / consoleAPICalled, Input.dispatchKeyEvent /
// insertText, Target.activateTarget.
#include "chromium.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace netsem::testing {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::optional<std::string> base64_decode(std::string_view text) {
  std::array<int, 256> value{};
  value.fill(-1);
  constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t i = 0; i < kAlphabet.size(); ++i)
    value[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int>(i);
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : text) {
    if (c == '=') break;
    const int v = value[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

// Moves `fd` to `target` in a child before exec, without the close-on-exec
// flag (dup2 onto itself would keep it, so go through a free number first).
void move_fd(int fd, int target) {
  const int spare = fcntl(fd, F_DUPFD, 10);
  dup2(spare, target);
  close(spare);
}

}  // namespace

std::optional<std::filesystem::path> Chromium::find_browser() {
  if (const char* chosen = getenv("NETSEM_CHROMIUM"); chosen != nullptr && *chosen != '\0') {
    if (access(chosen, X_OK) == 0) return std::filesystem::path(chosen);
    return std::nullopt;
  }
  const char* path = getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    for (const char* name : {"chromium", "chromium-browser"}) {
      const std::filesystem::path candidate = std::filesystem::path(dir) / name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return std::nullopt;
}

std::unique_ptr<Chromium> Chromium::start(const std::filesystem::path& browser, std::string* error, int width,
                                          int height) {
  std::unique_ptr<Chromium> chromium(new Chromium());
  std::string dir_template = (std::filesystem::temp_directory_path() / "netsem-chromium-XXXXXX").string();
  if (mkdtemp(dir_template.data()) == nullptr) {
    if (error != nullptr) *error = std::string("mkdtemp: ") + std::strerror(errno);
    return nullptr;
  }
  chromium->dir_ = dir_template;
  int commands[2];  // we write [1], the browser reads [0] as its fd 3
  int answers[2];   // the browser writes [1] as its fd 4, we read [0]
  if (pipe2(commands, O_CLOEXEC) != 0 || pipe2(answers, O_CLOEXEC) != 0) {
    if (error != nullptr) *error = std::string("pipe: ") + std::strerror(errno);
    return nullptr;
  }
  const std::string output = (chromium->dir_ / "output.log").string();
  std::vector<std::string> args = {
      browser.string(), "--headless=new",
      // Chromium's sandbox needs user namespaces or a setuid helper, which
      // containers and root often lack; the page under test is our own,
      // served from loopback.
      "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
      "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe",
      "--user-data-dir=" + (chromium->dir_ / "profile").string(),
      "--window-size=" + std::to_string(width) + "," + std::to_string(height), "about:blank"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    if (error != nullptr) *error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  if (pid == 0) {
    setpgid(0, 0);
    const int null_fd = open("/dev/null", O_RDONLY);
    const int out_fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    move_fd(commands[0], 3);
    move_fd(answers[1], 4);
    execv(argv[0], argv.data());
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so that the group exists before any kill below
  chromium->pid_ = pid;
  close(commands[0]);
  close(answers[1]);
  chromium->to_browser_ = commands[1];
  chromium->from_browser_ = answers[0];
  // A browser that exits makes writes fail with EPIPE, not kill the test.
  signal(SIGPIPE, SIG_IGN);

  const auto fail = [&](const std::string& what) {
    if (error != nullptr) *error = what + ": " + chromium->last_error_ + "\nbrowser output:\n" + chromium->output();
    return nullptr;
  };
  constexpr auto kStartTimeout = std::chrono::seconds(30);
  auto target = chromium->call("Target.createTarget", {{"url", "about:blank"}}, kStartTimeout, true);
  if (!target) return fail("Target.createTarget");
  auto attached = chromium->call("Target.attachToTarget", {{"targetId", (*target)["targetId"]}, {"flatten", true}},
                                 kStartTimeout, true);
  if (!attached) return fail("Target.attachToTarget");
  chromium->target_ = (*target)["targetId"].get<std::string>();
  chromium->session_ = (*attached)["sessionId"].get<std::string>();
  if (!chromium->call("Page.enable", json::object(), kStartTimeout)) return fail("Page.enable");
  if (!chromium->call("Runtime.enable", json::object(), kStartTimeout)) return fail("Runtime.enable");
  // A headless tab has no window focus of its own: without this, focus()
  // and key events would go nowhere.
  if (!chromium->call("Emulation.setFocusEmulationEnabled", {{"enabled", true}}, kStartTimeout)) {
    return fail("Emulation.setFocusEmulationEnabled");
  }
  return chromium;
}

Chromium::~Chromium() {
  if (to_browser_ >= 0) close(to_browser_);
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (from_browser_ >= 0) close(from_browser_);
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

std::string Chromium::output() const {
  std::ifstream in(dir_ / "output.log");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool Chromium::send_message(const json& message) {
  std::string bytes = message.dump();
  bytes.push_back('\0');
  std::string_view rest = bytes;
  while (!rest.empty()) {
    const ssize_t n = write(to_browser_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      last_error_ = std::string("write to the browser: ") + std::strerror(errno);
      return false;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<json> Chromium::next_message(Clock::time_point deadline) {
  for (;;) {
    if (const std::size_t end = buffer_.find('\0'); end != std::string::npos) {
      json message = json::parse(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
      buffer_.erase(0, end + 1);
      if (message.is_discarded()) continue;
      return message;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      last_error_ = "no answer in time";
      return std::nullopt;
    }
    pollfd pfd{from_browser_, POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;
    char chunk[65536];
    const ssize_t n = read(from_browser_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      last_error_ = "the browser closed its pipe (it exited)";
      return std::nullopt;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

void Chromium::record_event(const json& message) {
  const std::string method = message.value("method", "");
  const json& params = message.contains("params") ? message["params"] : json::object();
  if (method == "Page.loadEventFired") {
    loaded_ = true;
  } else if (method == "Runtime.exceptionThrown") {
    const json& details = params["exceptionDetails"];
    std::string text = details.value("text", "");
    if (details.contains("exception")) text += " " + details["exception"].value("description", "");
    page_errors_.push_back(text);
  } else if (method == "Runtime.consoleAPICalled" && params.value("type", "") == "error") {
    std::string text = "console.error:";
    for (const json& arg : params["args"])
      text += " " + arg.value("description", arg.contains("value") ? arg["value"].dump() : "");
    page_errors_.push_back(text);
  } else if (method == "Page.javascriptDialogOpening") {
    const std::string type = params.value("type", "");
    dialogs_.push_back(type + ": " + params.value("message", ""));
    // Answer it, or the page would stay blocked; the answer is not awaited.
    json answer = {{"accept", false}};
    if (type == "prompt" && prompt_answer_) answer = {{"accept", true}, {"promptText", *prompt_answer_}};
    send_message(
        {{"id", next_id_++}, {"sessionId", session_}, {"method", "Page.handleJavaScriptDialog"}, {"params", answer}});
  }
}

std::optional<json> Chromium::await_answer(int id, Clock::time_point deadline) {
  for (;;) {
    std::optional<json> message = next_message(deadline);
    if (!message) return std::nullopt;
    if (!message->contains("id")) {
      record_event(*message);
      continue;
    }
    if ((*message)["id"] != id) continue;
    if (message->contains("error")) {
      last_error_ = (*message)["error"].dump();
      return std::nullopt;
    }
    return message->value("result", json::object());
  }
}

std::optional<json> Chromium::call(const std::string& method, const json& params, std::chrono::milliseconds timeout,
                                   bool browser_level) {
  const int id = next_id_++;
  json message = {{"id", id}, {"method", method}, {"params", params}};
  if (!browser_level) message["sessionId"] = session_;
  if (!send_message(message)) return std::nullopt;
  return await_answer(id, Clock::now() + timeout);
}

bool Chromium::navigate(const std::string& url, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  loaded_ = false;
  auto result = call("Page.navigate", {{"url", url}}, timeout);
  if (!result) return false;
  if (result->contains("errorText")) {
    last_error_ = "navigate: " + (*result)["errorText"].get<std::string>();
    return false;
  }
  while (!loaded_) {
    std::optional<json> message = next_message(deadline);
    if (!message) return false;
    if (!message->contains("id")) record_event(*message);
  }
  return true;
}

std::optional<json> Chromium::evaluate(const std::string& expression, std::chrono::milliseconds timeout) {
  auto result =
      call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}}, timeout);
  if (!result) return std::nullopt;
  if (result->contains("exceptionDetails")) {
    const json& details = (*result)["exceptionDetails"];
    last_error_ = details.value("text", "exception");
    if (details.contains("exception")) last_error_ += " " + details["exception"].value("description", "");
    return std::nullopt;
  }
  last_error_.clear();
  const json& value = (*result)["result"];
  return value.contains("value") ? value["value"] : json(nullptr);
}

bool Chromium::wait_until(const std::string& expression, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    std::optional<json> value = evaluate(expression, left);
    if (value && *value == true) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::optional<std::string> Chromium::screenshot() {
  constexpr auto kTimeout = std::chrono::seconds(20);
  auto metrics = call("Page.getLayoutMetrics", json::object(), kTimeout);
  if (!metrics) return std::nullopt;
  const json& size = (*metrics)["cssContentSize"];
  json clip = {{"x", 0}, {"y", 0}, {"width", size["width"]}, {"height", size["height"]}, {"scale", 1}};
  auto shot =
      call("Page.captureScreenshot", {{"format", "png"}, {"captureBeyondViewport", true}, {"clip", clip}}, kTimeout);
  if (!shot) return std::nullopt;
  return base64_decode((*shot)["data"].get<std::string>());
}

bool Chromium::press_key(const std::string& key) {
  struct Key {
    const char* key;
    const char* code;
    int virtual_code;
    const char* text;
  };
  static constexpr Key kKeys[] = {
      {"Enter", "Enter", 13, "\r"}, {"Tab", "Tab", 9, ""},   {"Backspace", "Backspace", 8, ""},
      {"Escape", "Escape", 27, ""}, {" ", "Space", 32, " "},
  };
  for (const Key& k : kKeys) {
    if (key != k.key) continue;
    json down = {{"type", *k.text ? "keyDown" : "rawKeyDown"},
                 {"key", k.key},
                 {"code", k.code},
                 {"windowsVirtualKeyCode", k.virtual_code}};
    if (*k.text) down["text"] = k.text;
    json up = {{"type", "keyUp"}, {"key", k.key}, {"code", k.code}, {"windowsVirtualKeyCode", k.virtual_code}};
    constexpr auto kTimeout = std::chrono::seconds(10);
    return call("Input.dispatchKeyEvent", down, kTimeout).has_value() &&
           call("Input.dispatchKeyEvent", up, kTimeout).has_value();
  }
  last_error_ = "press_key: no such key: " + key;
  return false;
}

bool Chromium::type_text(const std::string& text) {
  return call("Input.insertText", {{"text", text}}, std::chrono::seconds(10)).has_value();
}

bool Chromium::set_visible(bool visible) {
  constexpr auto kTimeout = std::chrono::seconds(10);
  if (!visible && other_target_.empty()) {
    auto other = call("Target.createTarget", {{"url", "about:blank"}}, kTimeout, true);
    if (!other) return false;
    other_target_ = (*other)["targetId"].get<std::string>();
  }
  // Focus emulation keeps a tab visible: off while hidden.
  if (!call("Emulation.setFocusEmulationEnabled", {{"enabled", visible}}, kTimeout)) return false;
  const std::string& front = visible ? target_ : other_target_;
  if (front.empty()) return true;
  return call("Target.activateTarget", {{"targetId", front}}, kTimeout, true).has_value();
}

}  // namespace netsem::testing
