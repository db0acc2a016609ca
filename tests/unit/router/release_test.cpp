// router::OutcomeWindow and Release: the sliding window, the latency buckets and p99, rollback
// on the outcome that crosses a limit, promotion steps, the admin operations, the registry's
// reload rules, and the state document (ReleaseStore) round trip.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "proxy/release_store.h"
#include "proxy/router/release.h"

using namespace sluice;
using router::OutcomeWindow;
using router::Release;
using router::ReleasePhase;
using router::ReleaseSource;
using upstream::AttemptOutcome;

namespace {

config::RouteConfig route(uint32_t ws, uint32_t wc) {
  config::RouteConfig rc;
  rc.name = "app";
  rc.split.push_back({"stable", ws, {}});
  rc.split.push_back({"canary", wc, {}});
  return rc;
}

AttemptOutcome response(int status, uint64_t latencyUs = 1000) {
  AttemptOutcome o;
  o.status = status;
  o.latencyNs = latencyUs * 1000;
  return o;
}

AttemptOutcome failure(bool blame = true, bool afterHead = false) {
  AttemptOutcome o;
  o.kind = AttemptOutcome::Kind::Failure;
  o.error = observe::UpstreamErrorKind::ConnectFailed;
  o.blame = blame;
  o.afterHead = afterHead;
  return o;
}

}  // namespace

TEST_CASE("outcome window: counts slide out after the window") {
  OutcomeWindow w;
  w.setWindow(1000);  // 10 slots of 100 ms
  for (int i = 0; i < 5; ++i) w.record(10'000 + uint64_t(i) * 50, true, i % 2 == 0, 100);
  auto t = w.totals(10'300);
  CHECK(t.requests == 5);
  CHECK(t.errors == 3);
  CHECK(w.totals(10'950).requests == 5);  // slot 100 still inside
  CHECK(w.totals(11'050).requests == 3);  // the first slot (10'000-10'099) left
  CHECK(w.totals(11'250).requests == 0);  // and then the others
  CHECK(w.totals(20'000).requests == 0);
  // A slot's period coming round again starts from zero.
  w.record(11'000, true, false, 100);
  CHECK(w.totals(11'000).requests == 1 + 3);
  w.clear();
  CHECK(w.totals(11'000).requests == 0);
}

TEST_CASE("outcome window: latency buckets are monotonic and p99 picks the tail") {
  size_t last = 0;
  for (uint64_t us = 0; us < 20'000'000; us = us * 2 + 1) {
    const size_t b = OutcomeWindow::latencyBucket(us);
    CHECK(b >= last);
    last = b;
    if (b + 1 < OutcomeWindow::kLatencyBuckets && us > 8) {
      const double mid = double(OutcomeWindow::bucketMidUs(b));
      CHECK(mid >= double(us) * 0.8);
      CHECK(mid <= double(us) * 1.25);
    }
  }
  OutcomeWindow w;
  w.setWindow(30000);
  for (int i = 0; i < 990; ++i) w.record(1000, true, false, 1000);
  for (int i = 0; i < 10; ++i) w.record(1000, true, false, 50'000);
  CHECK(w.p99Us(1000) < 1300);  // the 990th of 1000 is still fast
  w.record(1000, true, false, 50'000);
  CHECK(w.p99Us(1000) > 40'000);
  // A failure after the head adds an error, not a request or a latency.
  OutcomeWindow v;
  v.record(5, false, true, 0);
  CHECK(v.totals(5).requests == 0);
  CHECK(v.totals(5).errors == 1);
  CHECK(v.p99Us(5) == 0);
}

TEST_CASE("release: the outcome that crosses max_error_rate rolls the canary back") {
  auto rc = route(50, 50);
  rc.rollback.enabled = true;
  rc.rollback.maxErrorRate = 0.1;
  rc.rollback.minRequests = 20;
  Release r("app", {"stable", "canary"});
  std::atomic<uint64_t> counter{0};
  r.setRollbackCounter(1, &counter);
  r.configure(rc, true, 1);
  const uint64_t v0 = r.weightsVersion();
  for (int i = 0; i < 19; ++i) r.onOutcome(1, response(500), 1000, rc.rollback);
  CHECK(r.weight(1) == 50);                          // 19 < min_requests: not judged yet
  r.onOutcome(0, response(500), 1000, rc.rollback);  // the baseline is never judged
  CHECK(r.weight(0) == 50);
  r.onOutcome(1, response(500), 1000, rc.rollback);
  CHECK(r.weight(1) == 0);
  CHECK(r.weight(0) == 100);
  CHECK(r.weightsVersion() > v0);
  CHECK(counter == 1);
  const auto s = r.state();
  CHECK(s.phase == ReleasePhase::RolledBack);
  CHECK(s.source == ReleaseSource::Rollback);
  CHECK(s.last.action == "rollback");
  CHECK(s.last.reason.find("error rate 1.000 > 0.100") == 0);
  CHECK(r.windowTotals(1, 1000).requests == 0);  // cleared: a restore is judged afresh
  // More failures of a canary at 0 change nothing.
  for (int i = 0; i < 30; ++i) r.onOutcome(1, response(500), 1000, rc.rollback);
  CHECK(counter == 1);
}

TEST_CASE("release: what counts as an error") {
  auto rc = route(50, 50);
  rc.rollback.enabled = true;
  rc.rollback.maxErrorRate = 0.0;  // any error
  rc.rollback.minRequests = 5;
  Release r("app", {"stable", "canary"});
  r.configure(rc, true, 1);
  for (int i = 0; i < 10; ++i) r.onOutcome(1, response(404), 1000, rc.rollback);
  r.onOutcome(1, failure(false), 1000, rc.rollback);  // stale pooled connection: not counted
  CHECK(r.weight(1) == 50);
  CHECK(r.windowTotals(1, 1000).requests == 10);
  r.onOutcome(1, failure(true, true), 1000, rc.rollback);  // broke after its head
  CHECK(r.weight(1) == 0);
}

TEST_CASE("release: peers' counts join the judgement") {
  auto rc = route(50, 50);
  rc.rollback.enabled = true;
  rc.rollback.maxErrorRate = 0.5;
  rc.rollback.minRequests = 20;
  Release r("app", {"stable", "canary"});
  r.configure(rc, true, 1);
  r.setPeerCounts({{100, 0}, {15, 15}});
  for (int i = 0; i < 4; ++i) r.onOutcome(1, response(500), 1000, rc.rollback);
  CHECK(r.weight(1) == 50);
  r.onOutcome(1, response(500), 1000, rc.rollback);  // 20 requests, 20 errors
  CHECK(r.weight(1) == 0);
}

TEST_CASE("release: promotion steps, pause, resume, rollback and promote") {
  auto rc = route(95, 5);
  rc.rollback.enabled = true;
  rc.rollback.maxErrorRate = 0.5;
  rc.rollback.minRequests = 3;
  rc.promote.enabled = true;
  rc.promote.steps = {5, 25, 50, 100};
  rc.promote.interval = config::Duration(1000);
  Release r("app", {"stable", "canary"});
  r.configure(rc, true, 10'000);
  CHECK(r.state().phase == ReleasePhase::Promoting);
  CHECK(r.state().step == 1);
  CHECK_FALSE(r.tick(0, 10'500));  // the interval has not passed
  CHECK_FALSE(r.tick(0, 11'000));  // no canary request yet
  for (int i = 0; i < 3; ++i) r.onOutcome(1, response(200), 1000, rc.rollback);
  CHECK(r.tick(0, 11'000));
  CHECK(r.weight(1) == 25);
  CHECK(r.weight(0) == 75);
  CHECK(r.state().source == ReleaseSource::Promote);
  for (int i = 0; i < 3; ++i) r.onOutcome(1, response(200), 1000, rc.rollback);
  CHECK(r.pause(11'500).status == 200);
  CHECK_FALSE(r.tick(0, 20'000));
  CHECK(r.resume(20'000).status == 200);
  CHECK_FALSE(r.tick(0, 20'500));  // a whole interval from the resume
  CHECK_FALSE(r.tick(0, 21'000));  // and new evidence since it
  for (int i = 0; i < 3; ++i) r.onOutcome(1, response(200), 1000, rc.rollback);
  CHECK(r.tick(0, 21'000));
  CHECK(r.weight(1) == 50);
  CHECK(r.promote(21'100).status == 200);  // manual step
  CHECK(r.weight(1) == 100);
  CHECK(r.state().phase == ReleasePhase::Complete);
  CHECK(r.promote(21'200).code == "already_complete");
  CHECK(r.rollback("test", ReleaseSource::Api, 21'300).status == 200);
  CHECK(r.weight(1) == 0);
  CHECK(r.weight(0) == 100);
  CHECK(r.rollback("again", ReleaseSource::Api, 21'400).code == "nothing_to_roll_back");
  CHECK(r.resume(21'500).code == "not_promoting");
  CHECK(r.promote(21'600).status == 200);  // after a rollback: the first step again
  CHECK(r.weight(1) == 5);
  CHECK(r.state().phase == ReleasePhase::Promoting);
  // The API takes over: a promotion in progress pauses.
  CHECK(r.setWeights({80, 20}, 21'700).status == 200);
  CHECK(r.state().paused);
  CHECK(r.state().source == ReleaseSource::Api);
}

TEST_CASE("release: promote without [route.promote] flips to the canary") {
  Release r("app", {"blue", "green"});
  r.configure(route(100, 0), true, 1);
  CHECK(r.pause(2).code == "no_promote");
  CHECK(r.promote(2).status == 200);
  CHECK(r.weight(0) == 0);
  CHECK(r.weight(1) == 100);
  Release three("x", {"a", "b", "c"});
  config::RouteConfig rc = route(1, 1);
  rc.split.push_back({"c", 1, {}});
  three.configure(rc, true, 1);
  CHECK(three.promote(2).code == "cannot_promote");
}

TEST_CASE("registry: a reload re-applies the file unless the state is kept and unchanged") {
  router::ReleaseRegistry reg;
  auto rc = route(90, 10);
  auto r = reg.obtain(rc, 1, false, 0);
  r->setWeights({50, 50}, 1);
  CHECK(reg.obtain(rc, 1, false, 0) == r);  // same generation (DNS rebuild): untouched
  CHECK(r->weight(1) == 50);
  reg.obtain(rc, 2, false, 0);  // a reload without a state file
  CHECK(r->weight(1) == 10);
  r->setWeights({50, 50}, 1);
  reg.obtain(rc, 3, true, 0);  // state kept, file unchanged
  CHECK(r->weight(1) == 50);
  auto changed = route(80, 20);
  reg.obtain(changed, 4, true, 0);  // the file changed: it wins
  CHECK(r->weight(1) == 20);
  auto other = route(80, 20);
  other.split[1].pool = "green";
  auto r2 = reg.obtain(other, 5, true, 0);  // other pools: a new release
  CHECK(r2 != r);
  reg.retain({});
  CHECK(reg.all().empty());
}

TEST_CASE("release store: state document round trip and refusals") {
  auto rc = route(90, 10);
  rc.promote.enabled = true;
  rc.promote.steps = {10, 100};
  Release r("app", {"stable", "canary"});
  r.configure(rc, true, 5);
  r.rollback("manual \"test\"", ReleaseSource::Api, 7);
  const auto s = r.state();
  const std::string doc = ReleaseStore::stateJson(r, s);
  router::ReleaseState back;
  REQUIRE(ReleaseStore::parseState(r, doc, back));
  CHECK(back.weights == s.weights);
  CHECK(back.fileWeights == s.fileWeights);
  CHECK(back.phase == ReleasePhase::RolledBack);
  CHECK(back.source == ReleaseSource::Api);
  CHECK(back.last.reason == "manual \"test\"");
  CHECK(back.version == s.version);
  CHECK(back.writer == s.writer);
  for (
      const char* bad :
      {"", "[]", "{", R"({"weights":{"stable":1}})",
       R"({"weights":{"stable":"x","canary":1},"file_weights":{"stable":1,"canary":1}})",
       R"({"weights":{"stable":0,"canary":0},"file_weights":{"stable":1,"canary":1}})",
       R"({"weights":{"stable":1,"canary":1},"file_weights":{"stable":1,"canary":1},"state":"odd"})",
       R"({"weights":{"stable":1,"canary":1},"file_weights":{"stable":1,"canary":1},"step":9})",
       R"({"weights":{"stable":1,"canary":1},"file_weights":{"stable":1,"canary":1},"paused":3})"}) {
    router::ReleaseState out;
    CHECK_MESSAGE(!ReleaseStore::parseState(r, bad, out), bad);
  }
}
