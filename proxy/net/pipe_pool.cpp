// PipePool: spare pipes for splice(2), per worker.
#include "proxy/net/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace sluice::net {

namespace {
void closePipe(Pipe& p) {
  ::close(p.rd);
  ::close(p.wr);
  p = Pipe{};
}
}  // namespace

PipePool::~PipePool() {
  for (Pipe& p : spare_) closePipe(p);
}

Pipe PipePool::take() {
  if (!spare_.empty()) {
    Pipe p = spare_.back();
    spare_.pop_back();
    return p;
  }
  if (open_ >= kMaxOpen) return {};
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  // Larger than the default 64 KiB: fewer splice calls per body. Refused above
  // /proc/sys/fs/pipe-max-size or the user's pipe quota: the default size still works.
  (void)::fcntl(fds[1], F_SETPIPE_SZ, int(kPipeSize));
  ++open_;
  return {fds[0], fds[1]};
}

void PipePool::give(Pipe& p, bool empty) {
  if (!p.valid()) return;
  if (empty && spare_.size() < kMaxSpare) {
    spare_.push_back(p);
    p = Pipe{};
    return;
  }
  closePipe(p);
  --open_;
}

}  // namespace sluice::net
