// Logging. Access-log lines are built by each worker into its own buffer and handed over in
// batches (once per loop turn) to one writer thread, so no event loop ever blocks on a file
// or a pipe. Event lines (startup, reload, errors) go to stderr through the same thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "config/schema.h"

namespace sluice::observe {

class LogWriter {
 public:
  static LogWriter& instance();

  void start();
  // Flushes everything queued, then stops the thread.
  void stop();
  // "stdout" | "off" | a path. Takes effect in order with queued writes. Returns false with
  // `err` when a path cannot be opened (checked synchronously, so startup and reload can fail).
  bool setAccessTarget(const std::string& target, std::string& err);
  bool accessEnabled() const { return accessEnabled_.load(std::memory_order_relaxed); }
  void writeAccess(std::string&& batch);
  void writeEvent(std::string&& line);
  // Reopens the access-log file (SIGUSR1): a rotated file is closed and a new one created.
  void reopen();

  void setFormat(config::LogFormat f) { format_.store(f); }
  config::LogFormat format() const { return format_.load(); }
  void setLevel(config::LogLevel l) { level_.store(l); }
  bool enabled(config::LogLevel l) const { return int(l) >= int(level_.load()); }

 private:
  struct Item {
    enum Kind { Access, Event, SetTarget, Reopen } kind;
    std::string data;
  };
  void run();
  void openTarget();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  bool started_ = false;
  std::thread thread_;
  // Writer-thread state.
  std::string target_ = "stdout";
  int accessFd_ = 1;
  std::atomic<bool> accessEnabled_{true};
  std::atomic<config::LogFormat> format_{config::LogFormat::Json};
  std::atomic<config::LogLevel> level_{config::LogLevel::Info};
};

using Field = std::pair<std::string_view, std::string_view>;
// One event line: JSON {"time","level","msg",fields...} or "time [level] msg k=v".
void logEvent(config::LogLevel level, std::string_view msg,
              std::initializer_list<Field> fields = {});

// Appends `s` JSON-escaped (without quotes).
void appendJsonEscaped(std::string& out, std::string_view s);
// Appends RFC 3339 UTC time with milliseconds, e.g. 2026-11-22T03:00:28.123Z.
void appendRfc3339Ms(std::string& out, int64_t unixMs);
// nginx's $time_local: 22/Nov/2026:03:00:28 +0000
void appendTimeLocal(std::string& out, int64_t unixMs);
int64_t nowUnixMs();

}  // namespace sluice::observe
