// FileResponder: one static-route answer on a worker's loop. The file-system work (try_files,
// index, open, stat, precompressed siblings, and reading a small file) goes to libuv's thread
// pool as one request; back on the loop the conditional and Range headers are judged
// (proxy/files/conditional.h) and the body goes out:
//   - small files (read by the lookup): one write;
//   - larger files on plain listeners: sendfile(2) straight from the page cache to the socket,
//     a bounded step per turn of the loop, resumed when the socket is writable again;
//   - larger files on TLS listeners: 64 KiB reads in the thread pool, each encrypted and
//     queued, the next one started when the client has taken the last.
// The exchange may go away at any point (client gone, reset): a request in the thread pool is
// then detached and cleans up after itself when it comes back.
//
// Small files' lookups (content and validators) are kept per worker thread for the route's
// `cache_valid` (FileCache, LRU, bounded): a hit answers at once, with no thread-pool trip and
// no system call but the write.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/files/site.h"
#include "proxy/http/local_reply.h"
#include "proxy/http/message.h"
#include "proxy/http/server_stream.h"

namespace sluice::files {

// What the responder asks of its exchange.
class FileCallbacks {
 public:
  virtual ~FileCallbacks() = default;
  // The answer's head (the exchange runs the response filters and encodes it).
  virtual void fileHead(http::ResponseHead& head, bool noBody) = 0;
  // An answer without a file: 301, 403, 404, 412, 416, 500 (a local reply).
  virtual void fileReply(const http::LocalReply& reply) = 0;
  virtual void fileBodySent(size_t n) = 0;  // body bytes handed to the stream
  virtual void fileEnd() = 0;               // the answer is complete
  virtual void fileBroken() = 0;            // it broke after the head: reset the stream
};

class FileResponder {
 public:
  FileResponder() = default;
  ~FileResponder() { cancel(); }
  FileResponder(const FileResponder&) = delete;
  FileResponder& operator=(const FileResponder&) = delete;

  // Starts answering `req` (GET or HEAD; `rawPath` is its path without the query, both views
  // into the request, valid until the exchange ends). `site` is kept alive by the lookup. The
  // callbacks come later, from the loop, except for a cache hit, answered from inside start()
  // (`answered` is then true: the caller is still inside the codec's callbacks). False, with
  // no callback, when the path cannot name a file (a NUL, an encoded dot segment, a bad
  // escape): the caller answers 400.
  bool start(uv_loop_t* loop, std::shared_ptr<const Site> site, const http::RequestHead& req,
             std::string_view rawPath, std::string_view query, ServerStream& stream,
             FileCallbacks& cb, bool& answered);
  // The client took what was queued for it (or the socket is writable again).
  void onWritable();
  // The exchange is done with this answer (ended, reset or abandoned).
  void cancel();
  bool active() const { return job_ != nullptr; }

 private:
  struct Job;
  enum class Mode : uint8_t { Memory, Sendfile, Read };

  static void runWork(uv_work_t* w);
  static void afterWork(uv_work_t* w, int status);
  static void afterRead(uv_fs_t* req);
  void onLookup();
  void respond(Job& j);
  void sendBody();
  void readNext();
  void onRead(ssize_t n);
  void complete();
  void broken();

  Job* job_ = nullptr;
  ServerStream* stream_ = nullptr;
  FileCallbacks* cb_ = nullptr;
  const http::RequestHead* req_ = nullptr;
  std::string_view rawPath_, query_;
  Mode mode_ = Mode::Memory;
  bool sync_ = false;  // answering a cache hit from inside start()
  uint64_t offset_ = 0;
  uint64_t remaining_ = 0;
  http::ResponseHead head_;  // capacity reused
};

}  // namespace sluice::files
