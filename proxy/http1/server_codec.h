// The HTTP/1.x server codec: everything about HTTP/1 bytes on a downstream connection.
// Request side: llhttp (Http1Parser) callbacks, the stash of bytes read ahead (pipelined
// requests, a body that arrived with its head), pausing after a head with a body until the
// exchange asks for it, 100-continue, parse errors as local replies. Response side: framing
// (Content-Length, chunked, close-delimited for HTTP/1.0), chunk encoding, the keep-alive
// decision and what follows a response (next request, lingering close, close after flush).
// One exchange at a time: requests on a connection are answered in order.
#pragma once

#include <cstdint>
#include <string>

#include "config/schema.h"
#include "proxy/http/http1_parser.h"
#include "proxy/http/rewrite.h"
#include "proxy/http/server_stream.h"
#include "proxy/net/out_queue.h"

namespace sluice::http1 {

// What the codec needs of the connection under it (DownstreamConnection; a fake in tests).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual net::OutQueue& out() = 0;
  virtual void startReading() = 0;
  virtual void stopReading() = 0;
  virtual void flush() = 0;            // write the out queue (closes on error)
  virtual void closeAfterFlush() = 0;  // end a connection whose request was fully read
  virtual void lingerClose() = 0;      // end it while the client may still be sending
  virtual void close() = 0;            // at once
  virtual bool closed() const = 0;     // closing or closed: feed nothing more
  virtual void armTimer(uint64_t ms) = 0;
  virtual void disarmTimer() = 0;
  // Wait `idleMs` for the next request (the connection may shed its per-request state).
  virtual void waitIdle(uint64_t idleMs) = 0;
  virtual bool closing() const = 0;  // graceful shutdown or worker drain: no more keep-alive
  // Nothing up the stack uses the stream any more: give it back if the connection is idle.
  virtual void safePoint() = 0;
  // The newest config's server settings (timeouts, limits).
  virtual const config::ServerSettings& settings() const = 0;
  // Static files (ServerStream::sendFile): plain TCP only.
  virtual bool canSendFile() const { return false; }
  virtual long sendFile(int /*fd*/, uint64_t /*offset*/, size_t /*len*/) { return -1; }
  virtual long splicePipe(int /*pipeRd*/, size_t /*len*/) { return -1; }
  // Bytes handed to the connection and not yet taken by the client's socket (they shrink as a
  // slow client reads, unlike out().queuedBytes(), which drops only when a write completes).
  virtual size_t unsentBytes() const { return 0; }
  // One onWritten() once the socket is writable.
  virtual void awaitWritable() {}
};

class ServerCodec final : public ServerStream, private http::Http1Parser::Handler {
 public:
  // Before use on a connection: the parser is ready for a request. `headTimerArmed`: the
  // connection's header timeout already runs (a new connection: it also bounds TLS).
  void bind(Transport* t, RequestDecoder* decoder, bool headTimerArmed);
  void recycle();  // back to the free list: drop bytes and per-request state

  // Plaintext from the connection.
  void onData(const char* data, size_t len);
  // The connection's deadline passed (not lingering).
  void onTimeout();
  // The client's queued bytes were written (the write callback).
  void onWritten();
  // No request in progress and nothing buffered: the stream may be given back.
  bool idle() const;
  // Graceful shutdown: true when the connection can close right now.
  bool canCloseNow() const;
  bool tunnel() const { return phase_ == Phase::Tunnel; }
  bool inRequest() const { return phase_ == Phase::Active; }
  // Bytes of a request that has started (for the 408 decision on a header timeout).
  bool messageStarted() const { return parser_.messageStarted(); }

  // --- ServerStream ---
  size_t encodeHeaders(const http::ResponseHead& head, const ResponseInfo& info) override;
  size_t encodeInterim(const http::ResponseHead& head) override;
  size_t encodeData(const char* data, size_t len) override;
  bool canSendFile() const override { return t_->canSendFile(); }
  long sendFile(int fd, uint64_t offset, size_t len) override;
  void awaitWritable() override { t_->awaitWritable(); }
  bool canSplice() const override {
    return framing_ == http::BodyFraming::ContentLength && t_->canSendFile();
  }
  long splicePipe(int pipeRd, size_t len) override;
  void encodeEnd() override;
  void encodeTunnelData(const char* data, size_t len) override;
  void endTunnel() override;
  void readBody() override;
  void pauseReading(bool pause) override;
  void startTunnel() override;
  void setTimeout(uint64_t ms) override;
  void safePoint() override { t_->safePoint(); }
  size_t queuedBytes() const override;
  size_t unsentBytes() const override { return t_->unsentBytes(); }
  void flush() override;
  void reset() override;  // the stream cannot go on: close the connection

 private:
  enum class Phase : uint8_t { ReadingHead, Active, Tunnel };

  // Http1Parser::Handler
  int onHeadersComplete() override;
  bool onBody(const char* data, size_t len) override;
  void onMessageComplete() override;

  void feed(const char* data, size_t len);
  void feedStash();
  void headDone(bool complete);
  void requestDone();
  void onParseError();
  void startNextRequest();
  http::BodyFraming framingFor(const http::ResponseHead& head, const ResponseInfo& info) const;

  Transport* t_ = nullptr;
  RequestDecoder* dec_ = nullptr;
  http::Http1Parser parser_;
  std::string stash_;      // unparsed bytes (pipelined requests, body after a paused head)
  std::string stashWork_;  // the stash being parsed right now
  Phase phase_ = Phase::ReadingHead;
  http::BodyFraming framing_ = http::BodyFraming::None;
  bool headTimer_ = false;      // the header timeout runs for the request being read
  bool headDelivered_ = false;  // the exchange has the head
  bool requestComplete_ = false;
  bool bodyFlowing_ = false;  // the parser runs the body (not paused)
  bool closeAfter_ = false;   // the response in progress ends the connection
  bool lingerAfter_ = false;  // ... with a lingering close
};

}  // namespace sluice::http1
