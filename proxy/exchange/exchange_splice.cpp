// Exchange: a response body spliced from the backend's socket to the client's through one of
// the worker's pipes (splice(2), no copy through user space), for plain TCP on both sides and
// a Content-Length body. Backpressure is the copy path's: the backend is not read while the
// client cannot take what is in the pipe.
#include <algorithm>

#include "proxy/exchange/exchange.h"
#include "proxy/worker.h"

namespace sluice {

bool Exchange::onUpstreamSpliceable(uint64_t remaining) {
  if (s_.ended || s_.tunnel || splice_.pipe.valid() || !stream_->canSplice()) return false;
  splice_.pipe = w_.pipes().take();
  if (!splice_.pipe.valid()) return false;  // none to spare: the copy path goes on
  splice_.remaining = remaining;
  splice_.total = remaining;
  splice_.inPipe = 0;
  return true;
}

void Exchange::onUpstreamReadable() {
  if (splice_.pipe.valid()) pumpSplice();
}

void Exchange::pumpSplice() {
  for (;;) {
    if (splice_.inPipe > 0) {
      const long n = stream_->splicePipe(splice_.pipe.rd, splice_.inPipe);
      if (n < 0) {  // the client connection broke
        endSplice();
        upstream_->abort();
        stream_->reset();
        return;
      }
      if (n == 0) {      // the client is full: leave the backend unread until it drains
        holdUpstream();  // (again on each progress: the client's deadline moves on)
        return;
      }
      splice_.inPipe -= size_t(n);
      s_.bytesSent += uint64_t(n);
      s_.bodyBytesSent += uint64_t(n);
      continue;
    }
    if (splice_.remaining == 0) {
      const uint64_t total = splice_.total;
      endSplice();
      upstream_->finishSplice(total);  // ends this exchange: touch nothing after
      return;
    }
    if (s_.upstreamPaused) releaseUpstream();
    const size_t want = size_t(std::min<uint64_t>(splice_.remaining, net::PipePool::kPipeSize));
    const long n = upstream_->spliceTo(splice_.pipe.wr, want);
    if (n <= 0) return;  // nothing now (readability calls back), or aborted (stream reset)
    splice_.remaining -= uint64_t(n);
    splice_.inPipe += size_t(n);
  }
}

void Exchange::endSplice() {
  if (!splice_.pipe.valid()) return;
  w_.pipes().give(splice_.pipe, splice_.inPipe == 0);
  splice_ = Splice{};
}

}  // namespace sluice
