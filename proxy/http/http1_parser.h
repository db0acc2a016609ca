// Http1Parser: llhttp behind one static settings table. It fills a RequestHead or ResponseHead,
// enforces head-size and header-count limits inside the callbacks, applies the framing rules
// that stop request smuggling, and hands body bytes to a Handler as views into the caller's
// buffer. It always pauses after a complete message so the owner decides when to go on.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>

#include "proxy/http/message.h"

namespace sluice::http {

enum class ParseError : uint8_t {
  None,
  Malformed,       // 400 (or 502 for a response)
  HeadTooLarge,    // 431
  TooManyHeaders,  // 431
  Unsupported,     // 501: a transfer coding other than chunked
  Aborted,         // the handler asked to stop
};

class Http1Parser {
 public:
  enum class Kind : uint8_t { Request, Response };

  class Handler {
   public:
    virtual ~Handler() = default;
    // Return kBody, kNoBody (response to HEAD), kUpgrade, kPause (stop after the head:
    // execute() returns HeadComplete; call resume() before feeding more) or kAbort.
    static constexpr int kBody = 0, kNoBody = 1, kUpgrade = 2, kPause = 3, kAbort = -1;
    virtual int onHeadersComplete() = 0;
    virtual bool onBody(const char* data, size_t len) = 0;
    virtual void onMessageComplete() = 0;
  };

  enum class Status : uint8_t {
    NeedMore,      // everything consumed, message not complete
    HeadComplete,  // the handler paused after the head; `consumed` bytes were used
    Complete,      // a message completed; `consumed` bytes were used, parser is paused
    Upgrade,       // head of an upgrade completed; the rest is not HTTP
    Error,
  };
  struct Result {
    Status status;
    size_t consumed;
  };

  Http1Parser() = default;
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  void init(Kind kind, Handler* handler, size_t maxHeadBytes, size_t maxHeaders = 100);
  // Parses `len` bytes. On Complete, call next() before feeding the unconsumed rest.
  Result execute(const char* data, size_t len);
  // The peer closed: completes a close-delimited message. Returns Complete, NeedMore (nothing was
  // in progress) or Error (truncated message).
  Status finish();
  // Prepares for the next message on the same connection.
  void next();
  // Continues after HeadComplete.
  void resume();
  // Inside a body framed by Content-Length: the bytes still to come; 0 otherwise (no body,
  // chunked, read until close, head not complete, message done).
  uint64_t bodyRemaining() const {
    if (!headComplete_ || messageDone_ || (parser_.flags & F_CHUNKED) != 0 ||
        (parser_.flags & F_CONTENT_LENGTH) == 0)
      return 0;
    return parser_.content_length;
  }
  // The next `n` bytes of a Content-Length body went past the parser (splice(2) moved them
  // socket to socket): account for them, as execute() would, without handing them to the
  // handler. Returns Complete when they were the last.
  Result skipBody(uint64_t n);
  // For a response parser: the request was HEAD, so the response has no body.
  void setExpectNoBody(bool v) { expectNoBody_ = v; }
  // Takes effect from the next message's head.
  void setMaxHeadBytes(size_t n) { maxHeadBytes_ = n; }

  bool headComplete() const { return headComplete_; }
  bool messageStarted() const { return messageStarted_; }
  ParseError error() const { return error_; }
  const char* errorReason() const { return llhttp_get_error_reason(&parser_); }

  RequestHead& request() { return request_; }
  const RequestHead& request() const { return request_; }
  ResponseHead& response() { return response_; }

 private:
  friend struct ParserCallbacks;
  int fail(ParseError e);
  int checkHeadSize(const char* at, size_t len);
  int countTrailer(size_t len);
  int validateRequestFraming();

  llhttp_t parser_{};
  Kind kind_ = Kind::Request;
  Handler* handler_ = nullptr;
  size_t maxHeadBytes_ = 0;
  size_t maxHeaders_ = 0;
  ParseError error_ = ParseError::None;
  // Byte accounting for the head-size limit: offsets relative to the whole connection stream.
  uint64_t fed_ = 0;  // bytes fed before the current buffer
  const char* bufStart_ = nullptr;
  uint64_t msgStart_ = 0;
  size_t trailerBytes_ = 0;
  bool msgStartKnown_ = false;
  bool inValue_ = false;
  bool headComplete_ = false;
  bool messageStarted_ = false;
  bool expectNoBody_ = false;
  bool messageDone_ = false;
  bool pausedAtHead_ = false;
  bool skipping_ = false;  // inside skipBody(): onBody is not called
  RequestHead request_;
  ResponseHead response_;
};

}  // namespace sluice::http
