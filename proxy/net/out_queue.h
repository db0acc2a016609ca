// OutQueue batches what one event-loop turn wants to write to a stream into one writev
// (uv_try_write). Only what the kernel does not take right away is copied into a uv_write
// request, so the common case costs one syscall and no allocation. Pieces added with ref()
// must stay valid until the next flush(); copy() pieces live in a reused scratch buffer.
#pragma once

#include <uv.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::tls {
class TlsSession;
}

namespace sluice::net {

class OutQueue {
 public:
  // Called when a queued write finishes (status < 0: it failed or was cancelled).
  using DoneFn = void (*)(void* owner, int status);

  void bind(uv_stream_t* stream, void* owner, DoneFn done) {
    stream_ = stream;
    owner_ = owner;
    done_ = done;
  }
  // With a TLS session, flush() encrypts the pieces and writes the records (and anything the
  // handshake left to send).
  void setTls(tls::TlsSession* s) { tls_ = s; }
  void copy(std::string_view s);
  void ref(const char* p, size_t n);
  // Direct access to the scratch buffer for serializers: begin() ... end() wraps what was
  // appended in between as one piece.
  std::string& beginScratch() {
    mark_ = scratch_.size();
    return scratch_;
  }
  void endScratch();

  // Writes all pieces. Returns 0 or a libuv error (the connection is then broken).
  int flush();
  bool hasPieces() const { return !pieces_.empty(); }
  // Writes raw bytes, bypassing TLS (a plain-HTTP answer on a TLS port).
  int writeRaw(std::string_view bytes);
  size_t queuedBytes() const { return queued_; }
  bool idle() const { return pieces_.empty() && queued_ == 0; }
  void reset() {
    pieces_.clear();
    scratch_.clear();
  }

 private:
  struct Piece {
    const char* ptr;  // nullptr: offset into scratch_
    size_t off;
    size_t len;
  };
  struct WriteReq;
  static void onWrite(uv_write_t* req, int status);
  int flushTls();
  // try_write what the kernel takes, copy the rest into a uv_write request.
  int writeBufs(uv_buf_t* bufs, size_t n);

  uv_stream_t* stream_ = nullptr;
  void* owner_ = nullptr;
  DoneFn done_ = nullptr;
  std::vector<Piece> pieces_;
  std::string scratch_;
  size_t mark_ = 0;
  size_t queued_ = 0;
  tls::TlsSession* tls_ = nullptr;
};

}  // namespace sluice::net
