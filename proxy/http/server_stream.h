// The codec seam between a downstream connection's wire protocol and the protocol-neutral
// exchange (Envoy's RequestDecoder / ResponseEncoder pair); protocol-neutral itself, so it sits
// in the http layer, below both. The HTTP/1 codec
// (proxy/http1/server_codec.*) implements ServerStream once per connection; a multiplexing
// codec (HTTP/2) would implement it per stream. The exchange never writes protocol bytes: it
// hands heads and body pieces to its ServerStream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/http/message.h"

namespace sluice {

// What the exchange says about a response besides its head.
struct ResponseInfo {
  std::string_view requestId;
  std::string_view extraHeaders;  // header lines configured on the listener (HSTS, ...)
  bool noBody = false;            // HEAD, 204, 304: the head only (a known Content-Length is kept)
  bool upgrade = false;           // a 101 for a WebSocket request: a tunnel follows
  bool close = false;             // the connection must end after this response
  bool local = false;  // the proxy's own reply: a close lingers (the client may still send)
};

// The exchange's handle on its stream: response encoding and request-body flow control.
class ServerStream {
 public:
  virtual ~ServerStream() = default;
  // Queue the response head; returns the bytes queued (for the access log).
  virtual size_t encodeHeaders(const http::ResponseHead& head, const ResponseInfo& info) = 0;
  // Queue an interim (1xx) head before the response (nothing for clients that cannot take
  // one, HTTP/1.0); returns the bytes queued.
  virtual size_t encodeInterim(const http::ResponseHead& head) = 0;
  // Queue body bytes (`data` stays valid until the next flush); returns bytes queued.
  virtual size_t encodeData(const char* data, size_t len) = 0;
  // The response is complete: the stream goes on with the next request or closes.
  virtual void encodeEnd() = 0;
  // Bytes after a 101: the tunnel's client side.
  virtual void encodeTunnelData(const char* data, size_t len) = 0;
  virtual void endTunnel() = 0;  // the backend closed: close after the queued bytes
  // Start delivering the request body to the exchange (sends 100 Continue when asked for).
  virtual void readBody() = 0;
  // Backpressure: stop / restart reading the request side.
  virtual void pauseReading(bool pause) = 0;
  // The 101 went out: from now on both directions are raw bytes (client bytes already read
  // are handed to decodeTunnelData).
  virtual void startTunnel() = 0;
  // Arm (ms > 0) or clear (0) the exchange's own deadline (waiting for a backend slot);
  // expiry calls RequestDecoder::onTimeout().
  virtual void setTimeout(uint64_t ms) = 0;
  // End of an upstream callback: nothing up the stack uses the exchange any more, so an idle
  // connection may give its per-request state back.
  virtual void safePoint() = 0;
  // Files (static routes): true when sendFile() can move file bytes to the client without
  // copying (a plain TCP connection; TLS needs the bytes in user space).
  virtual bool canSendFile() const { return false; }
  // Sends up to `len` bytes of `fd` from `offset` directly, after the queued bytes. Returns the
  // bytes sent; 0 when the client cannot take more now (onClientDrained() follows when it can);
  // < 0 when the connection broke.
  virtual long sendFile(int /*fd*/, uint64_t /*offset*/, size_t /*len*/) { return -1; }
  // Calls RequestDecoder::onClientDrained() once the connection can take more bytes.
  virtual void awaitWritable() {}
  // Proxied bodies spliced from a backend: true when splicePipe() can carry the body of the
  // response whose head was encoded (plain TCP, the body sent as is: Content-Length framing).
  virtual bool canSplice() const { return false; }
  // As sendFile(), from the pipe `pipeRd`: up to `len` bytes, after the queued bytes.
  virtual long splicePipe(int /*pipeRd*/, size_t /*len*/) { return -1; }
  // Bytes queued for the client and not yet written.
  virtual size_t queuedBytes() const = 0;
  // Of those, the bytes the client's socket has not taken yet: shrinks while a slow client
  // reads (progress), where queuedBytes() only drops when a whole write completes.
  virtual size_t unsentBytes() const { return queuedBytes(); }
  // Write what is queued (called outside the client's read callback).
  virtual void flush() = 0;
  // The stream cannot go on (a response started and broke, the client vanished): close the
  // connection without a reply.
  virtual void reset() = 0;
};

// What the codec delivers to the exchange.
class RequestDecoder {
 public:
  virtual ~RequestDecoder() = default;
  // The head is complete (`head` stays valid and mutable until the exchange ends).
  virtual void decodeHeaders(http::RequestHead& head, bool endOfRequest) = 0;
  // A piece of the body, valid until the next flush; false stops the parse (answered/closed).
  virtual bool decodeData(const char* data, size_t len) = 0;
  // The whole request has been read.
  virtual void decodeEnd() = 0;
  // End of a batch of decode calls: the pieces handed over are valid only until now, so write
  // them toward the backend.
  virtual void flushRequest() = 0;
  // Client bytes after a 101 (the tunnel), and the client's end of it.
  virtual void decodeTunnelData(const char* data, size_t len) = 0;
  virtual void decodeTunnelEnd() = 0;
  // The exchange's deadline (body idle, queue wait) passed.
  virtual void onTimeout() = 0;
  // The client took what was queued for it down to the low-water mark (resume the backend).
  virtual void onClientDrained() = 0;
  // The codec could not parse the request: answer `status` / `code` and close.
  virtual void decodeError(int status, std::string_view code) = 0;
  // The connection goes away: an unanswered request is logged (499) and everything dropped.
  virtual void abandon() = 0;
  // The response is done and the stream moves on: back to a fresh request.
  virtual void reset() = 0;
  virtual bool responseStarted() const = 0;
  // Filters or an upstream request are still attached.
  virtual bool holdsResources() const = 0;
};

}  // namespace sluice
