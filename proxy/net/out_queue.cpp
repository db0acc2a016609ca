// OutQueue: write directly first, copy only the remainder.
#include "proxy/net/out_queue.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "tls/tls_session.h"

namespace sluice::net {

namespace {
// Largest multi-piece batch gathered into one buffer before sending.
constexpr size_t kPackMax = 2048;

// What uv_try_write() does, minus two layers: sendto/sendmsg instead of write/writev (the
// socket path skips the VFS write checks) through syscall(), which is not a pthread
// cancellation point (glibc's send/write wrappers toggle async-cancel on every call). The
// caller guarantees libuv has nothing queued on the socket, as uv_try_write requires.
ssize_t directSend(uv_stream_t* stream, const uv_buf_t* bufs, size_t n) {
  uv_os_fd_t fd;
  if (stream->connect_req != nullptr || uv_fileno(reinterpret_cast<uv_handle_t*>(stream), &fd) != 0)
    return UV_EAGAIN;
  static_assert(sizeof(uv_buf_t) == sizeof(iovec));  // libuv's unix uv_buf_t is an iovec
  for (;;) {
    long r;
    if (n == 1) {
      r = syscall(SYS_sendto, fd, bufs[0].base, bufs[0].len, MSG_DONTWAIT | MSG_NOSIGNAL, nullptr,
                  0);
    } else {
      msghdr msg{};
      msg.msg_iov = reinterpret_cast<iovec*>(const_cast<uv_buf_t*>(bufs));
      msg.msg_iovlen = n > IOV_MAX ? IOV_MAX : n;
      r = syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return UV_EAGAIN;
    return -errno;  // libuv's error codes are negated errno values on Unix
  }
}
}  // namespace

struct OutQueue::WriteReq {
  uv_write_t req;
  OutQueue* queue;
  size_t len;
  char data[];
};

void OutQueue::copy(std::string_view s) {
  if (s.empty()) return;
  pieces_.push_back({nullptr, scratch_.size(), s.size()});
  scratch_.append(s);
}

void OutQueue::ref(const char* p, size_t n) {
  if (n) pieces_.push_back({p, 0, n});
}

void OutQueue::endScratch() {
  if (scratch_.size() > mark_) pieces_.push_back({nullptr, mark_, scratch_.size() - mark_});
}

int OutQueue::writeBufs(uv_buf_t* bufs, size_t n) {
  size_t batch = 0;
  for (size_t i = 0; i < n; ++i) batch += bufs[i].len;
  // A short batch in several pieces (a response head and a small body) is gathered into one
  // buffer: copying a few hundred bytes costs less than sendmsg's msghdr and iovec import.
  char packed[kPackMax];
  uv_buf_t one;
  if (n > 1 && batch <= kPackMax) {
    char* dst = packed;
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(dst, bufs[i].base, bufs[i].len);
      dst += bufs[i].len;
    }
    one = uv_buf_init(packed, unsigned(batch));
    bufs = &one;
    n = 1;
  }
  size_t written = 0;
  if (queued_ == 0) {
    ssize_t w = directSend(stream_, bufs, n);
    if (w >= 0)
      written = size_t(w);
    else if (w != UV_EAGAIN)
      return int(w);
  }
  if (written == batch) return 0;
  size_t rest = batch - written;
  auto* wr = static_cast<WriteReq*>(std::malloc(sizeof(WriteReq) + rest));
  wr->queue = this;
  wr->len = rest;
  char* dst = wr->data;
  size_t skip = written;
  for (size_t i = 0; i < n; ++i) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    std::memcpy(dst, bufs[i].base + skip, len - skip);
    dst += len - skip;
    skip = 0;
  }
  uv_buf_t b = uv_buf_init(wr->data, unsigned(rest));
  int w = uv_write(&wr->req, stream_, &b, 1, onWrite);
  if (w < 0) {
    std::free(wr);
    return w;
  }
  queued_ += rest;
  return 0;
}

int OutQueue::flush() {
  if (tls_) return flushTls();
  if (pieces_.empty()) return 0;
  constexpr size_t kMaxIov = 64;
  uv_buf_t bufs[kMaxIov];
  int rc = 0;
  // Several rounds only when there are more than kMaxIov pieces.
  for (size_t first = 0; first < pieces_.size() && rc == 0;) {
    size_t n = 0;
    for (size_t i = first; i < pieces_.size() && n < kMaxIov; ++i, ++n) {
      const Piece& p = pieces_[i];
      const char* base = p.ptr ? p.ptr : scratch_.data() + p.off;
      bufs[n] = uv_buf_init(const_cast<char*>(base), unsigned(p.len));
    }
    rc = writeBufs(bufs, n);
    first += n;
  }
  pieces_.clear();
  scratch_.clear();
  return rc;
}

int OutQueue::flushTls() {
  // Small pieces are gathered into one TLS record (up to 16k) instead of a record each.
  constexpr size_t kRecord = 16 * 1024;
  static thread_local std::string stage;
  bool ok = true;
  for (const Piece& p : pieces_) {
    const char* base = p.ptr ? p.ptr : scratch_.data() + p.off;
    if (p.len >= kRecord) {
      if (!stage.empty()) {
        ok = ok && tls_->write(stage.data(), stage.size());
        stage.clear();
      }
      ok = ok && tls_->write(base, p.len);
      continue;
    }
    stage.append(base, p.len);
    if (stage.size() >= kRecord) {
      ok = ok && tls_->write(stage.data(), stage.size());
      stage.clear();
    }
  }
  if (!stage.empty()) {
    ok = ok && tls_->write(stage.data(), stage.size());
    stage.clear();
  }
  pieces_.clear();
  scratch_.clear();
  if (!ok) return UV_EPROTO;
  std::string& cipher = tls_->pendingOut();
  if (cipher.empty()) return 0;
  uv_buf_t b = uv_buf_init(cipher.data(), unsigned(cipher.size()));
  int rc = writeBufs(&b, 1);
  cipher.clear();
  return rc;
}

int OutQueue::writeRaw(std::string_view bytes) {
  uv_buf_t b = uv_buf_init(const_cast<char*>(bytes.data()), unsigned(bytes.size()));
  return writeBufs(&b, 1);
}

void OutQueue::onWrite(uv_write_t* req, int status) {
  auto* wr = reinterpret_cast<WriteReq*>(req);
  OutQueue* q = wr->queue;
  q->queued_ -= wr->len;
  std::free(wr);
  if (q->done_) q->done_(q->owner_, status);
}

}  // namespace sluice::net
