#include "tls/session_store.h"

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace sluice::tls {

SessionStore::SessionStore(size_t maxEntries, Clock now) : max_(maxEntries), now_(now) {}

SessionStore::~SessionStore() {
  for (Rec* r = oldest_; r != nullptr;) {
    Rec* next = r->newer;
    std::free(r);
    r = next;
  }
}

SessionStore& SessionStore::process() {
  // Never destroyed: a worker may still resume a session while static destructors run.
  static auto* s = new SessionStore();
  return *s;
}

int64_t SessionStore::wallClock() {
  return int64_t(std::time(nullptr));
}

bool SessionStore::put(SSL_SESSION* sess) {
  unsigned int idLen = 0;
  const unsigned char* id = SSL_SESSION_get_id(sess, &idLen);
  int n = i2d_SSL_SESSION(sess, nullptr);
  if (idLen == 0 || idLen > SSL_MAX_SSL_SESSION_ID_LENGTH || n <= 0 || n > 16 * 1024) return false;
  // One allocation per session: the record, its id and its DER bytes.
  auto* r = static_cast<Rec*>(std::malloc(sizeof(Rec) + size_t(n)));
  if (r == nullptr) return false;
  r->idLen = uint8_t(idLen);
  std::memcpy(r->id, id, idLen);
  r->derLen = uint32_t(n);
  unsigned char* p = r->der;
  if (i2d_SSL_SESSION(sess, &p) != n) {
    std::free(r);
    return false;
  }
  r->expires = int64_t(SSL_SESSION_get_time(sess)) + int64_t(SSL_SESSION_get_timeout(sess));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = map_.find(r->key()); it != map_.end()) drop(it->second);  // same id again
  map_.emplace(r->key(), r);
  linkNewest(r);
  while (map_.size() > max_) drop(oldest_);
  return true;
}

SSL_SESSION* SessionStore::get(const unsigned char* id, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(std::string_view(reinterpret_cast<const char*>(id), len));
  if (it == map_.end()) return nullptr;
  Rec* r = it->second;
  if (r->expires <= now_()) {
    drop(r);
    return nullptr;
  }
  const unsigned char* p = r->der;
  return d2i_SSL_SESSION(nullptr, &p, long(r->derLen));
}

void SessionStore::remove(SSL_SESSION* sess) {
  unsigned int idLen = 0;
  const unsigned char* id = SSL_SESSION_get_id(sess, &idLen);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(std::string_view(reinterpret_cast<const char*>(id), idLen));
  if (it != map_.end()) drop(it->second);
}

size_t SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

void SessionStore::linkNewest(Rec* r) {
  r->older = newest_;
  r->newer = nullptr;
  if (newest_) newest_->newer = r;
  newest_ = r;
  if (!oldest_) oldest_ = r;
}

void SessionStore::unlink(Rec* r) {
  (r->older ? r->older->newer : oldest_) = r->newer;
  (r->newer ? r->newer->older : newest_) = r->older;
}

void SessionStore::drop(Rec* r) {
  map_.erase(r->key());
  unlink(r);
  std::free(r);
}

}  // namespace sluice::tls
