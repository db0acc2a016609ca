#include "proxy/files/conditional.h"

#include <cstdio>

#include "proxy/http/message.h"

namespace sluice::files {

namespace {

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void append2(int v, std::string& out) {
  out.push_back(char('0' + v / 10));
  out.push_back(char('0' + v % 10));
}

int monthIndex(std::string_view m) {
  for (int i = 0; i < 12; ++i)
    if (http::iequals(m, kMonths[i])) return i;
  return -1;
}

// Digits at s[i..i+n) as a number, or -1.
int digits(std::string_view s, size_t i, size_t n) {
  if (i + n > s.size()) return -1;
  int v = 0;
  for (size_t k = i; k < i + n; ++k) {
    if (s[k] < '0' || s[k] > '9') return -1;
    v = v * 10 + (s[k] - '0');
  }
  return v;
}

// "HH:MM:SS" at s[i..].
bool parseClock(std::string_view s, size_t i, std::tm& tm) {
  tm.tm_hour = digits(s, i, 2);
  tm.tm_min = digits(s, i + 3, 2);
  tm.tm_sec = digits(s, i + 6, 2);
  return i + 8 <= s.size() && s[i + 2] == ':' && s[i + 5] == ':' && tm.tm_hour >= 0 &&
         tm.tm_hour < 24 && tm.tm_min >= 0 && tm.tm_min < 60 && tm.tm_sec >= 0 && tm.tm_sec <= 60;
}

std::time_t fromTm(std::tm& tm) {
  if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_mon < 0 || tm.tm_year < 70) return -1;
  return timegm(&tm);
}

// Strong comparison unless `weak`; `tag` and `etag` are quoted entity-tags, maybe W/.
bool tagEquals(std::string_view tag, std::string_view etag, bool weak) {
  const bool tagWeak = tag.size() > 2 && tag[0] == 'W' && tag[1] == '/';
  const bool etagWeak = etag.size() > 2 && etag[0] == 'W' && etag[1] == '/';
  if (!weak && (tagWeak || etagWeak)) return false;
  if (tagWeak) tag.remove_prefix(2);
  if (etagWeak) etag.remove_prefix(2);
  return tag == etag;
}

// "bytes=a-b" / "bytes=a-" / "bytes=-n" against `size`. Returns 206 with the slice, 416, or
// 200 when the header is to be ignored (malformed, several ranges, another unit).
Decision rangeFor(std::string_view range, uint64_t size) {
  Decision whole{200, 0, size};
  range = http::trimOws(range);
  if (range.size() < 6 || !http::iequals(range.substr(0, 6), "bytes=")) return whole;
  std::string_view spec = http::trimOws(range.substr(6));
  if (spec.empty() || spec.find(',') != std::string_view::npos) return whole;
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return whole;
  auto number = [](std::string_view s, uint64_t& v) {
    s = http::trimOws(s);
    if (s.empty() || s.size() > 19) return false;
    v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + uint64_t(c - '0');
    }
    return true;
  };
  uint64_t first = 0, last = 0;
  const std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  if (http::trimOws(a).empty()) {  // suffix: the last n bytes
    if (!number(b, last)) return whole;
    if (last == 0 || size == 0) return {416, 0, 0};
    const uint64_t n = last < size ? last : size;
    return {206, size - n, n};
  }
  if (!number(a, first)) return whole;
  if (http::trimOws(b).empty()) {
    last = size ? size - 1 : 0;
  } else if (!number(b, last) || last < first) {
    return whole;  // a syntactically invalid range-spec: ignored
  }
  if (first >= size) return {416, 0, 0};
  if (last >= size) last = size - 1;
  return {206, first, last - first + 1};
}

}  // namespace

void appendHttpDate(std::time_t t, std::string& out) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  out.append(kDays[tm.tm_wday]).append(", ");
  append2(tm.tm_mday, out);
  out.push_back(' ');
  out.append(kMonths[tm.tm_mon]).push_back(' ');
  const int year = tm.tm_year + 1900;
  append2(year / 100, out);
  append2(year % 100, out);
  out.push_back(' ');
  append2(tm.tm_hour, out);
  out.push_back(':');
  append2(tm.tm_min, out);
  out.push_back(':');
  append2(tm.tm_sec, out);
  out.append(" GMT");
}

std::time_t parseHttpDate(std::string_view s) {
  s = http::trimOws(s);
  std::tm tm{};
  const size_t comma = s.find(',');
  if (comma == 3 && s.size() == 29) {  // Sun, 06 Nov 1994 08:49:37 GMT
    tm.tm_mday = digits(s, 5, 2);
    tm.tm_mon = monthIndex(s.substr(8, 3));
    const int year = digits(s, 12, 4);
    if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || year < 0 ||
        !parseClock(s, 17, tm) || s.substr(25) != " GMT")
      return -1;
    tm.tm_year = year - 1900;
    return fromTm(tm);
  }
  if (comma != std::string_view::npos && comma > 3) {  // Sunday, 06-Nov-94 08:49:37 GMT
    std::string_view r = s.substr(comma + 1);
    if (r.size() != 23 || r[0] != ' ' || r[3] != '-' || r[7] != '-' || r[10] != ' ' ||
        r.substr(19) != " GMT")
      return -1;
    tm.tm_mday = digits(r, 1, 2);
    tm.tm_mon = monthIndex(r.substr(4, 3));
    int year = digits(r, 8, 2);
    if (year < 0 || !parseClock(r, 11, tm)) return -1;
    tm.tm_year = year < 70 ? year + 100 : year;  // RFC 9110 5.6.7: 50 years rule, simplified
    return fromTm(tm);
  }
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ') {  // Sun Nov  6 08:49:37 1994
    tm.tm_mon = monthIndex(s.substr(4, 3));
    tm.tm_mday = s[8] == ' ' ? digits(s, 9, 1) : digits(s, 8, 2);
    const int year = digits(s, 20, 4);
    if (s[10] != ' ' || s[19] != ' ' || year < 0 || !parseClock(s, 11, tm)) return -1;
    tm.tm_year = year - 1900;
    return fromTm(tm);
  }
  return -1;
}

void appendEtag(std::time_t mtime, uint64_t size, std::string& out) {
  char buf[48];
  const int n =
      std::snprintf(buf, sizeof buf, "\"%llx-%llx\"", static_cast<unsigned long long>(mtime),
                    static_cast<unsigned long long>(size));
  out.append(buf, size_t(n));
}

bool etagListMatches(std::string_view list, std::string_view etag, bool weak) {
  list = http::trimOws(list);
  if (list == "*") return true;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view tag = http::trimOws(list.substr(0, comma));
    if (!tag.empty() && tagEquals(tag, etag, weak)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

Decision evaluate(const Conditions& c, std::string_view etag, std::time_t mtime, uint64_t size) {
  // 1-2: preconditions on the current representation.
  if (!c.ifMatch.empty()) {
    if (!etagListMatches(c.ifMatch, etag, false)) return {412, 0, 0};
  } else if (!c.ifUnmodifiedSince.empty()) {
    const std::time_t t = parseHttpDate(c.ifUnmodifiedSince);
    if (t >= 0 && mtime > t) return {412, 0, 0};
  }
  // 3-4: the client's cached copy is still good.
  if (!c.ifNoneMatch.empty()) {
    if (etagListMatches(c.ifNoneMatch, etag, true)) return {304, 0, 0};
  } else if (!c.ifModifiedSince.empty()) {
    const std::time_t t = parseHttpDate(c.ifModifiedSince);
    if (t >= 0 && mtime <= t) return {304, 0, 0};
  }
  // 5: a range, when If-Range (if any) still names this representation.
  if (c.range.empty()) return {200, 0, size};
  if (!c.ifRange.empty()) {
    std::string_view ir = http::trimOws(c.ifRange);
    bool same = false;
    if (!ir.empty()) {
      same = ir.front() == '"' || ir.rfind("W/", 0) == 0 ? tagEquals(ir, etag, false)
                                                         : parseHttpDate(ir) == mtime;
    }
    if (!same) return {200, 0, size};
  }
  return rangeFor(c.range, size);
}

bool acceptsEncoding(std::string_view acceptEncoding, std::string_view coding) {
  bool star = false, starSeen = false;
  std::string_view list = acceptEncoding;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = http::trimOws(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    std::string_view name = item, params;
    if (const size_t semi = item.find(';'); semi != std::string_view::npos) {
      name = http::trimOws(item.substr(0, semi));
      params = item.substr(semi + 1);
    }
    // q=0 (q=0.0, q=0.000) refuses; any other weight accepts.
    bool refused = false;
    for (size_t q = params.find("q="); q != std::string_view::npos; q = params.find("q=", q + 1)) {
      if (q > 0 && params[q - 1] != ' ' && params[q - 1] != ';' && params[q - 1] != '\t') continue;
      std::string_view v = params.substr(q + 2);
      v = v.substr(0, v.find(';'));
      v = http::trimOws(v);
      refused = !v.empty() && v[0] == '0' && v.find_first_of("123456789") == std::string_view::npos;
      break;
    }
    const bool match = http::iequals(name, coding) ||
                       (http::iequals(coding, "gzip") && http::iequals(name, "x-gzip"));
    if (match) return !refused;
    if (name == "*") {
      starSeen = true;
      star = !refused;
    }
  }
  return starSeen && star;
}

}  // namespace sluice::files
