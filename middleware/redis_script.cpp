// Scripts (see redis_script.h) and RedisClient's script layer: SCRIPT LOAD once per
// connection, EVALSHA with the NOSCRIPT reload-and-retry, and batchEval(): the calls of one
// loop turn collected per script and sent at the end-of-turn flush as one EVALSHA, whose flat
// reply is split back into one slice per call.
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>

#include "middleware/redis_client.h"
#include "proxy/observe/log.h"

namespace sluice::middleware {

using observe::RedisErrorKind;

RedisScript::RedisScript(std::string b) : body(std::move(b)) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), md, &len, EVP_sha1(), nullptr);
  static const char* kHex = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    sha.push_back(kHex[md[i] >> 4]);
    sha.push_back(kHex[md[i] & 15]);
  }
}

RedisBatchScript::RedisBatchScript(std::string body, unsigned args, unsigned replies)
    : script(std::move(body)), argsPerCall(args), repliesPerCall(replies) {}

bool RedisClient::ensureScript(const RedisScript& s) {
  if (std::find(loaded_.begin(), loaded_.end(), &s) != loaded_.end()) return true;
  Pending* p = acquire();
  p->kind = Kind::ScriptLoad;
  p->argv.resize(3);
  p->argv[0] = "SCRIPT";
  p->argv[1] = "LOAD";
  p->argv[2] = s.body;
  if (!sendOrRelease(p)) return false;
  loaded_.push_back(&s);
  return true;
}

void RedisClient::onScriptLoaded(Pending* p, const redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR) {
    if (metrics_ != nullptr) metrics_->redisError(RedisErrorKind::Reply);
    observe::logEvent(config::LogLevel::Error, "redis SCRIPT LOAD failed",
                      {{"error", std::string_view(r->str, r->len)}});
    loaded_.clear();  // try again with the next command
  }
  release(p);
  armTimer();
}

bool RedisClient::retryAfterNoscript(Pending* p, const RedisScript& s, const redisReply* r) {
  if (r->type != REDIS_REPLY_ERROR || p->retried || state_ != State::Ready ||
      !std::string_view(r->str, r->len).starts_with("NOSCRIPT"))
    return false;
  // The script cache was flushed (SCRIPT FLUSH, failover): load it again and send `p` once
  // more (pipelined). The script did not run, so nothing was decided yet.
  p->retried = true;
  loaded_.erase(std::remove(loaded_.begin(), loaded_.end(), &s), loaded_.end());
  return ensureScript(s) && send(p);
}

RedisClient::Handle RedisClient::batchEval(const RedisBatchScript& script, std::string_view key,
                                           std::initializer_list<std::string_view> args,
                                           BatchCallback cb, void* user) {
  if (!isUp() || cb == nullptr || args.size() != script.argsPerCall) return {};
  Pending* p = nullptr;
  for (auto it = collecting_.rbegin(); it != collecting_.rend(); ++it) {
    if ((*it)->batch == &script) {
      p = *it;
      break;
    }
  }
  if (p == nullptr || p->calls.size() >= kMaxBatch) {
    p = acquire();
    p->kind = Kind::Batch;
    p->batch = &script;
    collecting_.push_back(p);
    armFlush();
  }
  uint64_t seq = ++seq_;
  p->calls.push_back({seq, cb, user, false});
  p->keys.append(key);
  p->keyEnds.push_back(uint32_t(p->keys.size()));
  for (std::string_view a : args) {
    p->args.append(a);
    p->argEnds.push_back(uint32_t(p->args.size()));
  }
  return {p, seq, uint32_t(p->calls.size() - 1)};
}

void RedisClient::pushArg(const char* d, size_t n) {
  argvPtrs_.push_back(d);
  argvLens_.push_back(n);
}

bool RedisClient::pushBatchArgv(Pending* p) {
  // EVALSHA sha N key.. args..: only the calls not cancelled by now.
  size_t live = 0;
  for (BatchCall& c : p->calls) {
    c.sent = c.cb != nullptr;
    live += c.sent ? 1 : 0;
  }
  if (live == 0) return false;
  const std::string& sha = p->batch->script.sha;
  auto nk = std::to_chars(p->numkeys, p->numkeys + sizeof p->numkeys, live);
  pushArg("EVALSHA", 7);
  pushArg(sha.data(), sha.size());
  pushArg(p->numkeys, size_t(nk.ptr - p->numkeys));
  uint32_t from = 0;
  for (size_t i = 0; i < p->calls.size(); ++i) {
    uint32_t to = p->keyEnds[i];
    if (p->calls[i].sent) pushArg(p->keys.data() + from, to - from);
    from = to;
  }
  const size_t per = p->batch->argsPerCall;
  from = 0;
  for (size_t i = 0; i < p->calls.size(); ++i) {
    for (size_t j = 0; j < per; ++j) {
      uint32_t to = p->argEnds[i * per + j];
      if (p->calls[i].sent) pushArg(p->args.data() + from, to - from);
      from = to;
    }
  }
  return true;
}

void RedisClient::dispatchBatch(Pending* p) {
  bool live = std::any_of(p->calls.begin(), p->calls.end(),
                          [](const BatchCall& c) { return c.cb != nullptr; });
  if (!live) {  // every call was cancelled: nothing to send
    release(p);
    return;
  }
  if (isUp() && ensureScript(p->batch->script) && send(p)) return;
  // The connection went away since the calls were queued.
  finishBatch(p, RedisStatus::Disconnected, nullptr);
  release(p);
}

void RedisClient::finishBatch(Pending* p, RedisStatus status, const redisReply* r) {
  // With a reply: each call sent gets its slice (or Error when the reply is not an array of
  // the declared size). Without: every call still waiting gets `status`.
  const size_t per = p->batch->repliesPerCall;
  if (r != nullptr) {
    size_t sent = size_t(
        std::count_if(p->calls.begin(), p->calls.end(), [](const BatchCall& c) { return c.sent; }));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != sent * per) {
      if (metrics_ != nullptr) metrics_->redisError(RedisErrorKind::Reply);
      r = nullptr;
      status = RedisStatus::Error;
    }
  }
  size_t slot = 0;
  for (size_t i = 0; i < p->calls.size(); ++i) {
    BatchCall& c = p->calls[i];  // callbacks may cancel other calls; none are added
    if (r != nullptr && !c.sent) continue;
    std::span<const redisReply* const> slice;
    if (r != nullptr) slice = {r->element + (slot++) * per, per};
    BatchCallback cb = c.cb;
    void* user = c.user;
    c.cb = nullptr;
    c.user = nullptr;
    if (cb != nullptr) cb(user, status, slice);
  }
}

void RedisClient::onBatchReply(Pending* p, redisReply* r) {
  // send() fails when every call was cancelled meanwhile: then no retry.
  if (retryAfterNoscript(p, p->batch->script, r)) return;
  finishBatch(p, RedisStatus::Ok, r);
  release(p);
  armTimer();
}

}  // namespace sluice::middleware
