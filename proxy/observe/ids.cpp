// Request id and traceparent helpers.
#include "proxy/observe/ids.h"

#include <sys/random.h>

#include <chrono>

namespace sluice::observe {

IdGenerator::IdGenerator() {
  if (getrandom(&state_, sizeof state_, 0) != sizeof state_)
    state_ = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^
             uint64_t(reinterpret_cast<uintptr_t>(this));
}

uint64_t IdGenerator::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

namespace {
// "00" .. "ff": one table lookup per random byte.
struct HexPairs {
  char pairs[256][2];
  HexPairs() {
    static const char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) {
      pairs[i][0] = kHex[i >> 4];
      pairs[i][1] = kHex[i & 15];
    }
  }
};
const HexPairs kPairs;
}  // namespace

namespace {
// 8 random bytes -> 16 lower-case hex characters without a table: every nibble is spread to
// its own byte and turned into '0'..'9' / 'a'..'f' for all 16 at once. The characters come out
// in nibble-permuted order, which does not matter for random bytes.
inline uint64_t nibblesToHex(uint64_t x) {
  uint64_t letter = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;  // nibble >= 10
  return x + 0x3030303030303030ull + letter * ('a' - '0' - 10);
}
}  // namespace

void IdGenerator::hex(std::string& out, size_t bytes) {
  char buf[64];
  while (bytes > 0) {
    size_t n = bytes < 32 ? bytes : 32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t v = next();
      uint64_t lo = nibblesToHex(v & 0x0f0f0f0f0f0f0f0full);
      uint64_t hi = nibblesToHex((v >> 4) & 0x0f0f0f0f0f0f0f0full);
      __builtin_memcpy(buf + 2 * i, &lo, 8);
      __builtin_memcpy(buf + 2 * i + 8, &hi, 8);
    }
    if (i < n) {
      uint64_t v = next();
      for (; i < n; ++i, v >>= 8) __builtin_memcpy(buf + 2 * i, kPairs.pairs[v & 0xff], 2);
    }
    out.append(buf, 2 * n);
    bytes -= n;
  }
}

void IdGenerator::requestId(std::string& out) {
  hex(out, 16);
}

bool isSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

static bool isLowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

static bool allZero(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

bool isValidTraceparent(std::string_view tp) {
  // version "-" trace-id(32) "-" parent-id(16) "-" flags(2); version ff is invalid. Future
  // versions may append fields after another "-".
  if (tp.size() < 55) return false;
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  std::string_view ver = tp.substr(0, 2), trace = tp.substr(3, 32), parent = tp.substr(36, 16),
                   flags = tp.substr(53, 2);
  if (!isLowerHex(ver) || ver == "ff" || !isLowerHex(trace) || !isLowerHex(parent) ||
      !isLowerHex(flags))
    return false;
  if (allZero(trace) || allZero(parent)) return false;
  if (ver == "00" && tp.size() != 55) return false;
  if (tp.size() > 55 && tp[55] != '-') return false;
  return true;
}

void nextTraceparent(std::string_view incoming, IdGenerator& gen, std::string& out) {
  if (isValidTraceparent(incoming)) {
    out.append("00-");
    out.append(incoming.substr(3, 32));
    out.push_back('-');
    gen.hex(out, 8);
    out.push_back('-');
    out.append(incoming.substr(53, 2));
    return;
  }
  out.append("00-");
  gen.hex(out, 16);
  out.push_back('-');
  gen.hex(out, 8);
  out.append("-01");
}

void writeHex64(char* out, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) __builtin_memcpy(out + 2 * i, kPairs.pairs[v & 0xff], 2);
}

void appendHex64(std::string& out, uint64_t v) {
  char buf[16];
  writeHex64(buf, v);
  out.append(buf, 16);
}

uint64_t sampleThreshold(double ratio) {
  if (!(ratio > 0)) return 0;
  if (ratio >= 1) return UINT64_MAX;
  return uint64_t(ratio * 18446744073709551616.0);  // ratio x 2^64, below 2^64
}

static int hexValue(char c) {
  return c <= '9' ? c - '0' : c - 'a' + 10;
}

void startTrace(std::string_view incoming, IdGenerator& gen, uint64_t threshold, std::string& out,
                TraceStart& ts) {
  if (isValidTraceparent(incoming)) {
    nextTraceparent(incoming, gen, out);
    ts.sampled = (hexValue(incoming[54]) & 1) != 0;  // flags' low bit
    ts.hasParent = true;
    __builtin_memcpy(ts.parentId, incoming.data() + 36, 16);
  } else {
    const uint64_t hi = gen.next(), lo = gen.next();
    ts.sampled = sampledByRatio(lo, threshold);
    ts.hasParent = false;
    out.append("00-");
    appendHex64(out, hi);
    appendHex64(out, lo);
    out.push_back('-');
    appendHex64(out, gen.next());
    out.append(ts.sampled ? "-01" : "-00");
  }
  if (ts.sampled) writeHex64(ts.spanId, gen.next());
}

}  // namespace sluice::observe
