// Request and response heads as parsed from the wire. Header names and values are copied into
// one per-message arena (reused across the messages of a connection, so no allocation once
// warm) and addressed by offsets; lookups are case-insensitive.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/known_headers.h"

namespace sluice::http {

bool iequals(std::string_view a, std::string_view b);
// True if the comma-separated list `list` contains `token` (case-insensitive, trimmed).
bool listContainsToken(std::string_view list, std::string_view token);
std::string_view trimOws(std::string_view s);

class HeaderMap {
 public:
  struct Field {
    uint32_t nameOff, nameLen, valueOff, valueLen;
    bool removed;
    Hdr id;
  };

  void clear() {
    buf_.clear();
    fields_.clear();
  }
  // Parser side: a header arrives in pieces.
  void beginField() { fields_.push_back({uint32_t(buf_.size()), 0, 0, 0, false, Hdr::Other}); }
  void appendName(const char* p, size_t n) {
    buf_.append(p, n);
    fields_.back().nameLen += uint32_t(n);
  }
  void beginValue() { fields_.back().valueOff = uint32_t(buf_.size()); }
  void appendValue(const char* p, size_t n) {
    buf_.append(p, n);
    fields_.back().valueLen += uint32_t(n);
  }
  // End of a header from the parser: trims the value and classifies the name.
  void trimLastValue();

  void add(std::string_view name, std::string_view value);
  size_t size() const { return fields_.size(); }
  bool removedAt(size_t i) const { return fields_[i].removed; }
  std::string_view nameAt(size_t i) const {
    return {buf_.data() + fields_[i].nameOff, fields_[i].nameLen};
  }
  std::string_view valueAt(size_t i) const {
    return {buf_.data() + fields_[i].valueOff, fields_[i].valueLen};
  }
  void removeAt(size_t i) { fields_[i].removed = true; }
  Hdr idAt(size_t i) const { return fields_[i].id; }
  // Lookups by class: a byte compare per header.
  std::string_view get(Hdr id, bool* found = nullptr) const;
  bool has(Hdr id) const;
  size_t count(Hdr id) const;
  // First live value of `name`, or empty view with found=false.
  std::string_view get(std::string_view name, bool* found = nullptr) const;
  bool has(std::string_view name) const;
  size_t count(std::string_view name) const;
  void remove(std::string_view name);

 private:
  std::string buf_;
  std::vector<Field> fields_;
};

struct RequestHead {
  std::string method;
  std::string target;  // request-target as sent
  uint8_t versionMajor = 1, versionMinor = 1;
  HeaderMap headers;
  bool keepAlive = true;
  bool chunked = false;
  bool hasContentLength = false;
  uint64_t contentLength = 0;
  bool upgrade = false;  // llhttp saw Connection: upgrade + Upgrade (or CONNECT)

  void clear() {
    method.clear();
    target.clear();
    headers.clear();
    keepAlive = true;
    chunked = hasContentLength = upgrade = false;
    contentLength = 0;
  }
  bool hasBody() const { return chunked || (hasContentLength && contentLength > 0); }
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  uint8_t versionMajor = 1, versionMinor = 1;
  HeaderMap headers;
  bool keepAlive = true;
  bool chunked = false;
  bool hasContentLength = false;
  uint64_t contentLength = 0;
  bool upgrade = false;

  void clear() {
    status = 0;
    reason.clear();
    headers.clear();
    keepAlive = true;
    chunked = hasContentLength = upgrade = false;
    contentLength = 0;
  }
};

}  // namespace sluice::http
