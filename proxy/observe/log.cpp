// Log writer thread and event-line formatting.
#include "proxy/observe/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace sluice::observe {

LogWriter& LogWriter::instance() {
  static LogWriter w;
  return w;
}

void LogWriter::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void LogWriter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  started_ = false;
}

bool LogWriter::setAccessTarget(const std::string& target, std::string& err) {
  if (target != "stdout" && target != "off") {
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      err = "cannot open access log " + target + ": " + std::strerror(errno);
      return false;
    }
    ::close(fd);
  }
  accessEnabled_.store(target != "off");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) {
      target_ = target;
      openTarget();
      return true;
    }
    queue_.push_back({Item::SetTarget, target});
  }
  cv_.notify_one();
  return true;
}

void LogWriter::openTarget() {
  if (accessFd_ > 2) ::close(accessFd_);
  accessFd_ = -1;
  if (target_ == "stdout")
    accessFd_ = 1;
  else if (target_ != "off")
    accessFd_ = ::open(target_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void writeAll(int fd, const std::string& s) {
  size_t off = 0;
  while (fd >= 0 && off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += size_t(n);
  }
}

void LogWriter::writeAccess(std::string&& batch) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) {
      writeAll(accessFd_, batch);
      return;
    }
    queue_.push_back({Item::Access, std::move(batch)});
  }
  cv_.notify_one();
}

void LogWriter::writeEvent(std::string&& line) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) {
      writeAll(2, line);
      return;
    }
    queue_.push_back({Item::Event, std::move(line)});
  }
  cv_.notify_one();
}

void LogWriter::reopen() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) {
      openTarget();
      return;
    }
    queue_.push_back({Item::Reopen, {}});
  }
  cv_.notify_one();
}

void LogWriter::run() {
  std::deque<Item> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      batch.swap(queue_);
      if (batch.empty() && stopping_) return;
    }
    for (Item& it : batch) {
      switch (it.kind) {
        case Item::Access:
          writeAll(accessFd_, it.data);
          break;
        case Item::Event:
          writeAll(2, it.data);
          break;
        case Item::SetTarget:
          target_ = it.data;
          openTarget();
          break;
        case Item::Reopen:
          openTarget();
          break;
      }
    }
    batch.clear();
  }
}

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void appendRfc3339Ms(std::string& out, int64_t unixMs) {
  time_t secs = time_t(unixMs / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  n += size_t(snprintf(buf + n, sizeof buf - n, ".%03dZ", int(unixMs % 1000)));
  out.append(buf, n);
}

void appendTimeLocal(std::string& out, int64_t unixMs) {
  time_t secs = time_t(unixMs / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%d/%b/%Y:%H:%M:%S +0000", &tm);
  out.append(buf, n);
}

void appendJsonEscaped(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // Non-ASCII bytes from the network may not be valid UTF-8: escape them all.
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(char(c));
        }
    }
  }
}

static const char* levelName(config::LogLevel l) {
  switch (l) {
    case config::LogLevel::Debug:
      return "debug";
    case config::LogLevel::Info:
      return "info";
    case config::LogLevel::Warn:
      return "warn";
    case config::LogLevel::Error:
      return "error";
  }
  return "info";
}

void logEvent(config::LogLevel level, std::string_view msg, std::initializer_list<Field> fields) {
  LogWriter& w = LogWriter::instance();
  if (!w.enabled(level)) return;
  std::string line;
  line.reserve(128);
  if (w.format() == config::LogFormat::Json) {
    line.append("{\"time\":\"");
    appendRfc3339Ms(line, nowUnixMs());
    line.append("\",\"level\":\"");
    line.append(levelName(level));
    line.append("\",\"msg\":\"");
    appendJsonEscaped(line, msg);
    line.push_back('"');
    for (const auto& [k, v] : fields) {
      line.append(",\"");
      appendJsonEscaped(line, k);
      line.append("\":\"");
      appendJsonEscaped(line, v);
      line.push_back('"');
    }
    line.append("}\n");
  } else {
    appendRfc3339Ms(line, nowUnixMs());
    line.append(" [");
    line.append(levelName(level));
    line.append("] ");
    line.append(msg);
    for (const auto& [k, v] : fields) {
      line.push_back(' ');
      line.append(k);
      line.push_back('=');
      line.append(v);
    }
    line.push_back('\n');
  }
  w.writeEvent(std::move(line));
}

}  // namespace sluice::observe
