// PipePool: a worker's spare pipes for splice(2) (HAProxy's pipe pool). A body moved from the
// backend's socket to the client's goes socket -> pipe -> socket inside the kernel, with no
// copy through user space; each transfer in progress holds one pipe.
#pragma once

#include <cstddef>
#include <vector>

namespace sluice::net {

struct Pipe {
  int rd = -1;
  int wr = -1;
  bool valid() const { return rd >= 0; }
};

class PipePool {
 public:
  // Each pipe's capacity: what one splice(2) pair moves (the kernel may round it up).
  static constexpr size_t kPipeSize = 256 * 1024;
  // Spare pipes kept per worker; busy ones beyond are made and closed as needed.
  static constexpr size_t kMaxSpare = 16;
  // At most this many pipes open per worker (spare + busy); beyond, bodies take the copy path.
  static constexpr size_t kMaxOpen = 256;

  PipePool() = default;
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;
  ~PipePool();

  // A pipe (empty), or an invalid one when none can be had (descriptor shortage, the cap).
  Pipe take();
  // Back to the pool; `empty`: no bytes are left in it (else it is closed).
  void give(Pipe& p, bool empty);
  size_t open() const { return open_; }

 private:
  std::vector<Pipe> spare_;
  size_t open_ = 0;  // spare + taken
};

}  // namespace sluice::net
