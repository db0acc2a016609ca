// Lua scripts for RedisClient::batchEval(), with their SHA1 computed locally so
// EVALSHA needs no round trip first. redis_script.cpp also holds the client's script layer:
// SCRIPT LOAD once per connection, the NOSCRIPT reload-and-retry, and batchEval batching.
#pragma once

#include <string>

namespace sluice::middleware {

// A Lua script with its SHA1, computed locally so EVALSHA needs no round trip first.
struct RedisScript {
  explicit RedisScript(std::string body);
  std::string body;
  std::string sha;
};

// A script that decides many independent calls in one EVALSHA (see RedisClient::batchEval):
// KEYS = key1..keyN, ARGV = the `argsPerCall` args of call 1, then of call 2, ...; it must
// return a flat array of `repliesPerCall` elements per call, in call order.
struct RedisBatchScript {
  RedisBatchScript(std::string body, unsigned argsPerCall, unsigned repliesPerCall);
  RedisScript script;
  unsigned argsPerCall;
  unsigned repliesPerCall;
};

}  // namespace sluice::middleware
