// The one parser for request Cookie headers (RFC 6265 4.2.1 / 5.4): "name=value" pairs
// separated by ';' with optional whitespace (SP / HTAB) around pairs, names and values; a
// value in DQUOTEs is returned without them. Pairs without '=' or with an empty name are
// skipped. Names are case-sensitive. Nothing allocates: every view points into the header.
// Several Cookie header lines (HTTP/2 splits cookies, RFC 9113 8.2.3; some HTTP/1 clients
// send more than one) are read as if joined with "; ", so the first pair of a name wins.
#pragma once

#include <cstddef>
#include <iterator>
#include <optional>
#include <string_view>

#include "proxy/http/message.h"

namespace sluice::http {

struct CookiePair {
  std::string_view name;
  std::string_view value;  // DQUOTEs removed
};

// Takes the next pair from the front of `rest` (a Cookie header value, or what is left of
// it). Returns false when no pair is left.
bool nextCookie(std::string_view& rest, CookiePair& out);

// `for (CookiePair c : CookieRange(headerValue))`.
class CookieRange {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = CookiePair;
    using difference_type = std::ptrdiff_t;
    using pointer = const CookiePair*;
    using reference = const CookiePair&;

    iterator() = default;
    explicit iterator(std::string_view header) : rest_(header) { ++*this; }
    const CookiePair& operator*() const { return cur_; }
    const CookiePair* operator->() const { return &cur_; }
    iterator& operator++() {
      done_ = !nextCookie(rest_, cur_);
      return *this;
    }
    bool operator==(const iterator& o) const { return done_ && o.done_; }

   private:
    std::string_view rest_;
    CookiePair cur_;
    bool done_ = true;
  };

  explicit CookieRange(std::string_view header) : header_(header) {}
  iterator begin() const { return iterator(header_); }
  iterator end() const { return iterator(); }

 private:
  std::string_view header_;
};

// Calls f(const CookiePair&) for each pair of every live Cookie header, in order, until f
// returns false. Returns false when f stopped it.
template <class F>
bool forEachCookie(const HeaderMap& headers, F&& f) {
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.idAt(i) != Hdr::Cookie || headers.removedAt(i)) continue;
    for (const CookiePair& c : CookieRange(headers.valueAt(i)))
      if (!f(c)) return false;
  }
  return true;
}

// The value of the first cookie called `name` (possibly empty), or nullopt.
std::optional<std::string_view> findCookie(std::string_view headerValue, std::string_view name);
std::optional<std::string_view> findCookie(const HeaderMap& headers, std::string_view name);

}  // namespace sluice::http
