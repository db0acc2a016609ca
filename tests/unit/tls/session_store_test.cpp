// SessionStore (tls/session_store): the server session cache behind TLS 1.2 resumption by
// session id and TLS 1.3 stateful tickets. Real SSL_SESSION objects go in (DER-encoded by
// OpenSSL) and come back out decoded; the clock is the test's.
#include "tls/session_store.h"

#include <doctest/doctest.h>

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

using sluice::tls::SessionStore;

namespace {

struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

int64_t gNow = 1'000'000;
int64_t testClock() {
  return gNow;
}

std::array<unsigned char, 32> idOf(uint32_t n) {
  std::array<unsigned char, 32> id{};
  for (int i = 0; i < 4; ++i) id[size_t(i)] = static_cast<unsigned char>(n >> (8 * i));
  id[31] = 0x5a;
  return id;
}

// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, one of the suites a listener offers.
const SSL_CIPHER* cipher() {
  static const SSL_CIPHER* c = [] {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    SSL* ssl = SSL_new(ctx);
    const unsigned char code[2] = {0xc0, 0x2b};
    const SSL_CIPHER* found = SSL_CIPHER_find(ssl, code);  // static data, outlives the SSL
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return found;
  }();
  return c;
}

// A TLS 1.2 session with id `n`, created at `created` (seconds), living `timeout` seconds;
// `secret` fills its master key so two sessions with one id can be told apart.
SessionPtr session(uint32_t n, unsigned char secret = 1, int64_t created = gNow,
                   long timeout = 300) {
  SessionPtr s(SSL_SESSION_new());
  REQUIRE(s);
  auto id = idOf(n);
  REQUIRE(SSL_SESSION_set1_id(s.get(), id.data(), unsigned(id.size())) == 1);
  REQUIRE(SSL_SESSION_set_protocol_version(s.get(), TLS1_2_VERSION) == 1);
  REQUIRE(SSL_SESSION_set_cipher(s.get(), cipher()) == 1);
  std::array<unsigned char, 48> key{};
  key.fill(secret);
  REQUIRE(SSL_SESSION_set1_master_key(s.get(), key.data(), key.size()) == 1);
  SSL_SESSION_set_time(s.get(), long(created));
  SSL_SESSION_set_timeout(s.get(), timeout);
  return s;
}

SessionPtr lookup(SessionStore& store, uint32_t n) {
  auto id = idOf(n);
  return SessionPtr(store.get(id.data(), id.size()));
}

unsigned char secretOf(const SessionPtr& s) {
  std::array<unsigned char, 48> key{};
  REQUIRE(SSL_SESSION_get_master_key(s.get(), key.data(), key.size()) == key.size());
  return key[0];
}

}  // namespace

TEST_CASE("SessionStore: a stored session comes back decoded, as a new object") {
  SessionStore store(10, testClock);
  auto s = session(7, 42);
  CHECK(store.put(s.get()));
  CHECK(store.size() == 1);
  auto got = lookup(store, 7);
  REQUIRE(got);
  CHECK(got.get() != s.get());
  unsigned int len = 0;
  const unsigned char* id = SSL_SESSION_get_id(got.get(), &len);
  CHECK(std::string(reinterpret_cast<const char*>(id), len) ==
        std::string(reinterpret_cast<const char*>(idOf(7).data()), 32));
  CHECK(secretOf(got) == 42);
  CHECK(SSL_SESSION_get_protocol_version(got.get()) == TLS1_2_VERSION);
  CHECK(SSL_SESSION_get_timeout(got.get()) == 300);
  CHECK_FALSE(lookup(store, 8));
}

TEST_CASE("SessionStore: past 20,000 entries the oldest goes and the newest stays") {
  REQUIRE(SessionStore::kDefaultMaxEntries == 20000);
  SessionStore store(SessionStore::kDefaultMaxEntries, testClock);  // the production size
  for (uint32_t i = 0; i < 20000; ++i) REQUIRE(store.put(session(i).get()));
  CHECK(store.size() == 20000);
  CHECK(lookup(store, 0));  // still there at exactly 20,000
  CHECK(store.put(session(20000).get()));
  CHECK(store.size() == 20000);
  CHECK_FALSE(lookup(store, 0));  // the oldest went
  CHECK(lookup(store, 1));
  CHECK(lookup(store, 20000));  // the newest stays
  for (uint32_t i = 20001; i < 20100; ++i) REQUIRE(store.put(session(i).get()));
  CHECK(store.size() == 20000);
  CHECK_FALSE(lookup(store, 99));  // 99 more: the next 99 oldest went, in order (a lookup
  CHECK(lookup(store, 100));       // does not make a session younger)
  CHECK(lookup(store, 20099));
}

TEST_CASE("SessionStore: a session stored again under its id replaces the old one") {
  SessionStore store(3, testClock);
  store.put(session(1, 10).get());
  store.put(session(2, 20).get());
  store.put(session(3, 30).get());
  CHECK(store.put(session(1, 11).get()));  // same id, new session
  CHECK(store.size() == 3);
  auto got = lookup(store, 1);
  REQUIRE(got);
  CHECK(secretOf(got) == 11);
  // Replacing made it the newest: the next one pushes out 2, the oldest now.
  store.put(session(4, 40).get());
  CHECK(store.size() == 3);
  CHECK_FALSE(lookup(store, 2));
  CHECK(lookup(store, 1));
  CHECK(lookup(store, 3));
  CHECK(lookup(store, 4));
}

TEST_CASE("SessionStore: an expired session is refused and dropped") {
  SessionStore store(10, testClock);
  gNow = 2'000'000;
  store.put(session(1, 1, gNow, 10).get());  // until gNow + 10
  store.put(session(2, 2, gNow, 60).get());
  gNow += 9;
  CHECK(lookup(store, 1));  // one second left
  gNow += 1;
  CHECK_FALSE(lookup(store, 1));  // its lifetime is over: refused...
  CHECK(store.size() == 1);       // ...and dropped
  CHECK_FALSE(lookup(store, 1));
  CHECK(lookup(store, 2));  // the other one lives on
  gNow += 50;
  CHECK_FALSE(lookup(store, 2));
  CHECK(store.size() == 0);
  // A session created in the past is judged by its own creation time, not by when it was put.
  store.put(session(3, 3, gNow - 100, 60).get());
  CHECK_FALSE(lookup(store, 3));
}

TEST_CASE("SessionStore: remove") {
  SessionStore store(10, testClock);
  auto a = session(1);
  auto b = session(2);
  store.put(a.get());
  store.put(b.get());
  store.remove(a.get());
  CHECK(store.size() == 1);
  CHECK_FALSE(lookup(store, 1));
  CHECK(lookup(store, 2));
  store.remove(a.get());  // not there any more: nothing happens
  CHECK(store.size() == 1);
  // The list stays whole: the remaining session is both oldest and newest.
  store.put(session(3).get());
  store.remove(b.get());
  CHECK(lookup(store, 3));
  CHECK(store.size() == 1);
}

TEST_CASE("SessionStore: sessions without an id are not kept") {
  SessionStore store(10, testClock);
  SessionPtr s(SSL_SESSION_new());
  SSL_SESSION_set_protocol_version(s.get(), TLS1_2_VERSION);
  CHECK_FALSE(store.put(s.get()));
  CHECK(store.size() == 0);
  unsigned char none = 0;
  CHECK(store.get(&none, 0) == nullptr);
}
