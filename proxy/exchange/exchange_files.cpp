// Exchange: the serveFiles phase (a route with `static`) and the files::FileCallbacks through
// which its FileResponder answers.
#include "proxy/exchange/exchange.h"
#include "proxy/worker.h"

namespace sluice {

void Exchange::serveFiles() {
  // `static = {...}`: files from a directory (access log and metrics show pool "-").
  if (req_->method != "GET" && !s_.headRequest) {
    http::LocalReply r(405, "method_not_allowed");
    r.header("Allow", "GET, HEAD");
    sendLocalReply(r, false);
    return;
  }
  std::string_view hostFromTarget, path, query;
  router::splitTarget(req_->target, hostFromTarget, path, query);  // checked by normalizeTarget
  filesInline_ = true;  // a cache hit answers from inside start()
  bool answered = false;
  const bool ok =
      files_.start(w_.loop(), s_.route->files, *req_, path, query, *stream_, *this, answered);
  filesInline_ = false;
  if (!ok) sendLocalReply({400, "bad_request"}, false);
}

void Exchange::fileHead(http::ResponseHead& head, bool noBody) {
  s_.status = head.status;
  ResponseInfo info;
  info.noBody = noBody;
  info.close = !s_.requestComplete;
  encodeHeaders(head, info);
  // A client that stops taking the body is dropped after client_idle_timeout without progress
  // (re-armed in onClientDrained), as nginx's send_timeout.
  if (!noBody) stream_->setTimeout(uint64_t(snap_->config.server.clientIdleTimeout.count()));
}

void Exchange::fileReply(const http::LocalReply& reply) {
  ServerStream* st = stream_;
  const bool inline_ = filesInline_;
  filesInline_ = false;
  sendLocalReply(reply, false);
  if (!inline_) st->safePoint();  // from the thread pool's callback: the stream may go back now
}

void Exchange::fileBodySent(size_t n) {
  s_.bytesSent += n;
  s_.bodyBytesSent += n;
}

void Exchange::fileEnd() {
  finish();
  ServerStream* st = stream_;
  const bool inline_ = filesInline_;
  filesInline_ = false;  // endExchange may start the next (pipelined) request on this exchange
  endExchange();
  if (!inline_) st->safePoint();
}

void Exchange::fileBroken() {
  stream_->reset();  // a short answer must not look complete
}

}  // namespace sluice
