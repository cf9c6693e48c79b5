// A headless Chromium for tests, driven over the Chrome DevTools Protocol on
// a pipe (--remote-debugging-pipe: the browser reads commands from its fd 3
// and writes answers and events to its fd 4, each a JSON message ended by a
// NUL byte), so no port is opened and no WebDriver is needed: Debian's
// `chromium` package is all it takes. A test opens a page, evaluates
// JavaScript in it to read the rendered DOM, clicks, and waits for a
// condition; every wait has a deadline.
//
// The browser runs in a process group of its own with its own profile in a
// temporary directory; the destructor kills that group (SIGKILL) by its id
// and removes the directory.
//
// Thread safety: one object per test thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace netsem::testing {

class Chromium {
 public:
  // The browser to run: $NETSEM_CHROMIUM, else `chromium` or
  // `chromium-browser` on PATH; nullopt when there is none.
  static std::optional<std::filesystem::path> find_browser();

  // Starts the browser with a window of `width` x `height` CSS pixels and
  // opens one tab on about:blank. nullptr (with the reason and the browser's
  // output in `error`) when it does not come up within 30 s.
  static std::unique_ptr<Chromium> start(const std::filesystem::path& browser, std::string* error, int width = 1280,
                                         int height = 900);
  ~Chromium();
  Chromium(const Chromium&) = delete;
  Chromium& operator=(const Chromium&) = delete;

  // Loads `url` in the tab and waits for its load event; false on failure
  // or after `timeout`.
  bool navigate(const std::string& url, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Evaluates a JavaScript expression in the page (awaiting it when it is a
  // promise) and returns its value as JSON; nullopt when it threw or no
  // answer came within `timeout` (the reason then in last_error()).
  std::optional<nlohmann::json> evaluate(const std::string& expression,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Evaluates `expression` every 100 ms until it is `true` or `timeout`
  // passes; returns whether it became true.
  bool wait_until(const std::string& expression, std::chrono::milliseconds timeout);

  // A PNG of the whole page (beyond the window's height), or nullopt.
  std::optional<std::string> screenshot();

  // Presses and releases a key in the focused element, as the keyboard
  // would: "Enter", "Tab", "Backspace", "Escape" or " ".
  bool press_key(const std::string& key);
  // Types `text` into the focused element (Input.insertText: one input
  // event, as an input method gives it).
  bool type_text(const std::string& text);
  // Hides the tab by bringing another one to the front (document.hidden
  // becomes true, visibilitychange fires), or brings it back.
  bool set_visible(bool visible);

  // How the next JavaScript prompt() is answered: with `text` (accepted) or,
  // when nullopt (the default), dismissed as by Cancel. alert and confirm
  // are always dismissed. Every dialog is recorded in dialogs() either way.
  void set_prompt_answer(std::optional<std::string> text) { prompt_answer_ = std::move(text); }

  // Uncaught exceptions and console errors the page reported so far, and
  // JavaScript dialogs (alert, confirm, prompt) it tried to open, as
  // "<type>: <message>".
  const std::vector<std::string>& page_errors() const { return page_errors_; }
  const std::vector<std::string>& dialogs() const { return dialogs_; }
  void clear_page_reports() {
    page_errors_.clear();
    dialogs_.clear();
  }
  const std::string& last_error() const { return last_error_; }
  // What the browser wrote to stdout and stderr.
  std::string output() const;
  pid_t pid() const { return pid_; }

 private:
  Chromium() = default;
  // Sends a command (to the tab's session unless `browser_level`) and
  // returns its "result", or nullopt on an error answer or a timeout.
  std::optional<nlohmann::json> call(const std::string& method, const nlohmann::json& params,
                                     std::chrono::milliseconds timeout, bool browser_level = false);
  // Reads messages until the answer to `id` arrives or `deadline` passes,
  // recording events on the way.
  std::optional<nlohmann::json> await_answer(int id, std::chrono::steady_clock::time_point deadline);
  bool send_message(const nlohmann::json& message);
  std::optional<nlohmann::json> next_message(std::chrono::steady_clock::time_point deadline);
  void record_event(const nlohmann::json& message);

  std::filesystem::path dir_;  // profile and output; removed by the destructor
  pid_t pid_ = -1;
  int to_browser_ = -1;
  int from_browser_ = -1;
  std::string buffer_;
  int next_id_ = 1;
  std::string target_;        // the tab the test drives
  std::string other_target_;  // a blank tab brought to the front to hide it
  std::string session_;
  bool loaded_ = false;  // a Page.loadEventFired arrived since the last navigate
  std::vector<std::string> page_errors_;
  std::vector<std::string> dialogs_;
  std::optional<std::string> prompt_answer_;
  std::string last_error_;
};

}  // namespace netsem::testing
