// The server session cache: resumption by session id (TLS 1.2) and TLS 1.3 stateful tickets
// (session_tickets = false). One per process (SessionStore::process()), shared by every worker,
// certificate and config generation, like the ticket keys; OpenSSL's own cache is off
// (SSL_SESS_CACHE_NO_INTERNAL) and reaches this one through the new/get/remove callbacks.
//
// Sessions are kept DER-encoded (a few hundred bytes instead of OpenSSL's ~1 KB in-memory
// SSL_SESSION, the way nginx's shared cache stores them), in one allocation each, on a list
// from oldest to newest: past `maxEntries` the oldest go first, a session stored again under
// the same id replaces the old one (and becomes the newest), and one whose lifetime
// (SSL_SESSION_get_time + get_timeout) is over is refused and dropped on lookup.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace sluice::tls {

class SessionStore {
 public:
  // Seconds since the epoch, the clock of SSL_SESSION_get_time (tests pass their own).
  using Clock = int64_t (*)();
  static constexpr size_t kDefaultMaxEntries = 20000;

  explicit SessionStore(size_t maxEntries = kDefaultMaxEntries, Clock now = wallClock);
  ~SessionStore();
  SessionStore(const SessionStore&) = delete;
  SessionStore& operator=(const SessionStore&) = delete;

  // The process-wide store every server SSL_CTX uses.
  static SessionStore& process();
  static int64_t wallClock();

  // Keeps a copy of `sess` (the caller keeps its reference). False when it cannot be kept: no
  // id, larger than 16 KiB encoded, or out of memory.
  bool put(SSL_SESSION* sess);
  // A new SSL_SESSION the caller owns, or nullptr (unknown, or expired: then also dropped).
  SSL_SESSION* get(const unsigned char* id, size_t len);
  void remove(SSL_SESSION* sess);
  size_t size() const;

 private:
  struct Rec {
    Rec* older;
    Rec* newer;
    int64_t expires;
    uint32_t derLen;
    uint8_t idLen;
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    unsigned char der[];
    std::string_view key() const { return {reinterpret_cast<const char*>(id), idLen}; }
  };
  void linkNewest(Rec* r);
  void unlink(Rec* r);
  void drop(Rec* r);

  const size_t max_;
  const Clock now_;
  mutable std::mutex mu_;
  std::unordered_map<std::string_view, Rec*> map_;  // keys point into the records
  Rec* oldest_ = nullptr;
  Rec* newest_ = nullptr;
};

}  // namespace sluice::tls
