// llhttp glue. llhttp runs in strict mode (no lenient flags): it already refuses CL+TE, duplicate
// Content-Length, invalid chunk sizes, bare LF, obs-fold and whitespace before a colon. What it
// allows but a proxy must not (several codings, TE on HTTP/1.0, missing/duplicate Host) is
// refused in validateRequestFraming().
#include "proxy/http/http1_parser.h"

#include <cstring>

namespace sluice::http {

namespace {
inline Http1Parser* self(llhttp_t* p) {
  return static_cast<Http1Parser*>(p->data);
}
}  // namespace

struct ParserCallbacks {
  static int onMessageBegin(llhttp_t* p) {
    Http1Parser* s = self(p);
    s->messageStarted_ = true;
    s->headComplete_ = false;
    s->trailerBytes_ = 0;
    s->messageDone_ = false;
    s->msgStartKnown_ = false;
    s->inValue_ = false;
    if (s->kind_ == Http1Parser::Kind::Request)
      s->request_.clear();
    else
      s->response_.clear();
    return 0;
  }
  static int onUrl(llhttp_t* p, const char* at, size_t len) {
    Http1Parser* s = self(p);
    if (int rc = s->checkHeadSize(at, len)) return rc;
    s->request_.target.append(at, len);
    return 0;
  }
  static int onMethod(llhttp_t* p, const char* at, size_t len) {
    Http1Parser* s = self(p);
    if (int rc = s->checkHeadSize(at, len)) return rc;
    s->request_.method.append(at, len);
    return 0;
  }
  static int onStatus(llhttp_t* p, const char* at, size_t len) {
    Http1Parser* s = self(p);
    if (int rc = s->checkHeadSize(at, len)) return rc;
    s->response_.reason.append(at, len);
    return 0;
  }
  static HeaderMap& headers(Http1Parser* s) {
    return s->kind_ == Http1Parser::Kind::Request ? s->request_.headers : s->response_.headers;
  }
  static int onHeaderField(llhttp_t* p, const char* at, size_t len) {
    Http1Parser* s = self(p);
    if (s->headComplete_) return s->countTrailer(len);
    if (int rc = s->checkHeadSize(at, len)) return rc;
    HeaderMap& h = headers(s);
    if (s->inValue_ || h.size() == 0) {
      if (h.size() >= s->maxHeaders_) return s->fail(ParseError::TooManyHeaders);
      h.beginField();
      s->inValue_ = false;
    }
    h.appendName(at, len);
    return 0;
  }
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len) {
    Http1Parser* s = self(p);
    if (s->headComplete_) return s->countTrailer(len);
    if (int rc = s->checkHeadSize(at, len)) return rc;
    HeaderMap& h = headers(s);
    if (!s->inValue_) {
      h.beginValue();
      s->inValue_ = true;
    }
    h.appendValue(at, len);
    return 0;
  }
  static int onHeaderValueComplete(llhttp_t* p) {
    Http1Parser* s = self(p);
    if (s->headComplete_) return 0;  // a trailer
    HeaderMap& h = headers(s);
    if (!s->inValue_) {  // empty value: no on_header_value call
      h.beginValue();
      s->inValue_ = true;
    }
    h.trimLastValue();
    return 0;
  }
  static int onHeadersComplete(llhttp_t* p) {
    Http1Parser* s = self(p);
    s->headComplete_ = true;
    const bool req = s->kind_ == Http1Parser::Kind::Request;
    const bool chunked = (p->flags & F_CHUNKED) != 0;
    const bool hasCl = (p->flags & F_CONTENT_LENGTH) != 0;
    if (req) {
      RequestHead& r = s->request_;
      r.versionMajor = p->http_major;
      r.versionMinor = p->http_minor;
      r.keepAlive = llhttp_should_keep_alive(p);
      r.chunked = chunked;
      r.hasContentLength = hasCl;
      r.contentLength = hasCl ? p->content_length : 0;
      r.upgrade = p->upgrade;
      if (int rc = s->validateRequestFraming()) return rc;
    } else {
      ResponseHead& r = s->response_;
      r.status = p->status_code;
      r.versionMajor = p->http_major;
      r.versionMinor = p->http_minor;
      r.keepAlive = llhttp_should_keep_alive(p);
      r.chunked = chunked;
      r.hasContentLength = hasCl;
      r.contentLength = hasCl ? p->content_length : 0;
      r.upgrade = p->upgrade;
      // A response with a transfer coding other than chunked is delimited by close; we only
      // pass chunked through, so treat anything else as malformed.
      if ((p->flags & F_TRANSFER_ENCODING) && !chunked) return s->fail(ParseError::Malformed);
      // llhttp takes any three digits; a status below 100 has no class (RFC 9110 15), and
      // forwarded it would become a status line of fewer than three digits.
      if (r.status < 100) return s->fail(ParseError::Malformed);
    }
    int rc = s->handler_->onHeadersComplete();
    if (rc < 0) return s->fail(ParseError::Aborted);
    if (rc == Http1Parser::Handler::kPause) {
      s->pausedAtHead_ = true;
      return HPE_PAUSED;
    }
    if (!req && s->expectNoBody_ && rc == 0) rc = 1;
    return rc;
  }
  static int onBody(llhttp_t* p, const char* at, size_t len) {
    Http1Parser* s = self(p);
    if (s->skipping_) return 0;
    if (!s->handler_->onBody(at, len)) return s->fail(ParseError::Aborted);
    return 0;
  }
  static int onMessageComplete(llhttp_t* p) {
    Http1Parser* s = self(p);
    s->messageDone_ = true;
    s->handler_->onMessageComplete();
    return HPE_PAUSED;
  }
};

static const llhttp_settings_t kSettings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = ParserCallbacks::onMessageBegin;
  s.on_url = ParserCallbacks::onUrl;
  s.on_method = ParserCallbacks::onMethod;
  s.on_status = ParserCallbacks::onStatus;
  s.on_header_field = ParserCallbacks::onHeaderField;
  s.on_header_value = ParserCallbacks::onHeaderValue;
  s.on_header_value_complete = ParserCallbacks::onHeaderValueComplete;
  s.on_headers_complete = ParserCallbacks::onHeadersComplete;
  s.on_body = ParserCallbacks::onBody;
  s.on_message_complete = ParserCallbacks::onMessageComplete;
  return s;
}();

void Http1Parser::init(Kind kind, Handler* handler, size_t maxHeadBytes, size_t maxHeaders) {
  kind_ = kind;
  handler_ = handler;
  maxHeadBytes_ = maxHeadBytes;
  maxHeaders_ = maxHeaders;
  llhttp_init(&parser_, kind == Kind::Request ? HTTP_REQUEST : HTTP_RESPONSE, &kSettings);
  parser_.data = this;
  error_ = ParseError::None;
  fed_ = 0;
  headComplete_ = messageStarted_ = messageDone_ = pausedAtHead_ = expectNoBody_ = false;
}

int Http1Parser::fail(ParseError e) {
  if (error_ == ParseError::None) error_ = e;
  return HPE_USER;
}

int Http1Parser::countTrailer(size_t len) {
  // Trailers are parsed (framing must stay exact) but not forwarded; only bound their size.
  trailerBytes_ += len;
  return trailerBytes_ > maxHeadBytes_ ? fail(ParseError::HeadTooLarge) : 0;
}

int Http1Parser::checkHeadSize(const char* at, size_t len) {
  uint64_t pos = fed_ + uint64_t(at - bufStart_);
  if (!msgStartKnown_) {
    msgStart_ = pos;
    msgStartKnown_ = true;
  }
  if (pos + len - msgStart_ > maxHeadBytes_) return fail(ParseError::HeadTooLarge);
  return 0;
}

int Http1Parser::validateRequestFraming() {
  RequestHead& r = request_;
  // Any Transfer-Encoding line counts, even an empty one llhttp does not flag.
  if ((parser_.flags & F_TRANSFER_ENCODING) || r.headers.has(Hdr::TransferEncoding)) {
    // Exactly one coding, "chunked", is what we implement. A final "chunked" after other
    // codings is well-formed but unsupported (501); anything else is ambiguous (400).
    if (r.versionMajor == 1 && r.versionMinor == 0) return fail(ParseError::Malformed);
    int codings = 0;
    bool onlyChunked = true;
    for (size_t i = 0; i < r.headers.size(); ++i) {
      if (r.headers.idAt(i) != Hdr::TransferEncoding) continue;
      std::string_view v = r.headers.valueAt(i);
      while (true) {
        size_t comma = v.find(',');
        std::string_view item = trimOws(v.substr(0, comma));
        if (!item.empty()) {
          ++codings;
          if (!iequals(item, "chunked")) onlyChunked = false;
        }
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    }
    if (!r.chunked) return fail(ParseError::Malformed);
    if (!onlyChunked) return fail(ParseError::Unsupported);
    if (codings != 1) return fail(ParseError::Malformed);
  }
  // Only HTTP/1.x on this parser: an explicit "HTTP/0.9" (or "HTTP/2.0") request line is a
  // client confused about the protocol, as nginx also says.
  if (r.versionMajor != 1) return fail(ParseError::Malformed);
  size_t hosts = r.headers.count(Hdr::Host);
  if (hosts > 1) return fail(ParseError::Malformed);
  // A host never contains whitespace (RFC 3986 authority); "a b" would be read differently by
  // different hops.
  if (hosts == 1 &&
      trimOws(r.headers.get(Hdr::Host)).find_first_of(" \t") != std::string_view::npos)
    return fail(ParseError::Malformed);
  if (hosts == 0 && r.versionMajor == 1 && r.versionMinor >= 1) return fail(ParseError::Malformed);
  return 0;
}

Http1Parser::Result Http1Parser::execute(const char* data, size_t len) {
  if (error_ != ParseError::None) return {Status::Error, 0};
  bufStart_ = data;
  // Before a request line only empty lines (CRLF, or a bare LF) may come (RFC 9112 2.2); a CR
  // that is not followed by LF ("\r\r\rGET ...") is refused, as nginx does, not skipped.
  if (kind_ == Kind::Request && !messageStarted_) {
    for (size_t i = 0; i < len; ++i) {
      if (data[i] == '\n') continue;
      if (data[i] != '\r') break;
      if (i + 1 == len) break;  // the LF may come in the next read
      if (data[i + 1] != '\n') {
        error_ = ParseError::Malformed;
        return {Status::Error, 0};
      }
      ++i;
    }
  }
  llhttp_errno_t rc = llhttp_execute(&parser_, data, len);
  size_t consumed = len;
  Status st = Status::NeedMore;
  if (rc == HPE_OK) {
    // The head may still be open with bytes llhttp swallowed without a callback (OWS).
    if (messageStarted_ && !headComplete_ && msgStartKnown_ &&
        fed_ + len - msgStart_ > maxHeadBytes_) {
      error_ = ParseError::HeadTooLarge;
      st = Status::Error;
    }
  } else if (rc == HPE_PAUSED) {
    consumed = size_t(llhttp_get_error_pos(&parser_) - data);
    st = pausedAtHead_ ? Status::HeadComplete : Status::Complete;
  } else if (rc == HPE_PAUSED_UPGRADE) {
    consumed = size_t(llhttp_get_error_pos(&parser_) - data);
    st = Status::Upgrade;
  } else {
    if (error_ == ParseError::None) error_ = ParseError::Malformed;
    st = Status::Error;
    consumed = 0;
  }
  fed_ += consumed;
  return {st, consumed};
}

Http1Parser::Status Http1Parser::finish() {
  if (error_ != ParseError::None) return Status::Error;
  if (!messageStarted_ || messageDone_) return Status::NeedMore;
  llhttp_errno_t rc = llhttp_finish(&parser_);
  if (rc == HPE_OK || rc == HPE_PAUSED) return messageDone_ ? Status::Complete : Status::Error;
  if (error_ == ParseError::None) error_ = ParseError::Malformed;
  return Status::Error;
}

void Http1Parser::resume() {
  if (pausedAtHead_ && llhttp_get_errno(&parser_) == HPE_PAUSED) llhttp_resume(&parser_);
  pausedAtHead_ = false;
}

Http1Parser::Result Http1Parser::skipBody(uint64_t n) {
  // llhttp does not read the bytes of a Content-Length body: it only counts them, so any
  // bytes will do.
  static const char kFiller[16 * 1024] = {};
  Result total{Status::NeedMore, 0};
  skipping_ = true;
  while (n > 0) {
    const size_t k = n < sizeof kFiller ? size_t(n) : sizeof kFiller;
    const Result r = execute(kFiller, k);
    total.consumed += r.consumed;
    total.status = r.status;
    n -= r.consumed;
    if (r.status != Status::NeedMore || r.consumed < k) break;
  }
  skipping_ = false;
  return total;
}

void Http1Parser::next() {
  llhttp_errno_t e = llhttp_get_errno(&parser_);
  if (e == HPE_PAUSED)
    llhttp_resume(&parser_);
  else if (e == HPE_PAUSED_UPGRADE)
    llhttp_resume_after_upgrade(&parser_);
  messageStarted_ = headComplete_ = messageDone_ = pausedAtHead_ = false;
  expectNoBody_ = false;
}

}  // namespace sluice::http
