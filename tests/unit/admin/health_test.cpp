// Unit tests for proxy/admin/health: the liveness decision /health/live answers from.
#include "proxy/admin/health.h"

#include <doctest/doctest.h>

using sluice::admin::Liveness;

TEST_CASE("Liveness: live until a worker loop or the heartbeat itself is late") {
  Liveness l;
  uint32_t stalled = 99;
  bool mainStalled = true;
  CHECK(l.live(123456, &stalled, &mainStalled));  // no heartbeat yet: nothing to judge
  CHECK(stalled == 0);
  CHECK_FALSE(mainStalled);

  l.beat(1000, 0);
  CHECK(l.live(1000 + Liveness::kStallMs));  // on the bound: still live

  l.beat(2000, 1);  // the heartbeat found one worker loop that has not turned for kStallMs
  CHECK_FALSE(l.live(2001, &stalled, &mainStalled));
  CHECK(stalled == 1);
  CHECK_FALSE(mainStalled);

  l.beat(3000, 0);  // it turns again
  CHECK(l.live(3001));

  // The main loop (which runs the heartbeat) stopped: late heartbeat.
  CHECK_FALSE(l.live(3000 + Liveness::kStallMs + 1, &stalled, &mainStalled));
  CHECK(mainStalled);

  l.beat(0, 0);  // shutting down: no heartbeat, nothing to call stalled
  CHECK(l.live(1u << 30));
}
