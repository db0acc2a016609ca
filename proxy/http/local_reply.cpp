#include "proxy/http/local_reply.h"

#include "proxy/http/rewrite.h"

namespace sluice::http {

void buildLocalReply(const LocalReply& reply, std::string_view requestId, ResponseHead& head,
                     std::string& body) {
  head.clear();
  body.clear();
  head.status = reply.status;
  head.reason.assign(reasonPhrase(reply.status));
  if (!reply.code.empty()) {
    // Both parts come from fixed alphabets (codes are literals, ids are checked): no escaping.
    head.headers.add("Content-Type", "application/json");
    body.append("{\"error\":\"");
    body.append(reply.code);
    body.append("\",\"request_id\":\"");
    body.append(requestId);
    body.append("\"}");
  } else {
    if (!reply.contentType.empty()) head.headers.add("Content-Type", reply.contentType);
    body.assign(reply.body);
  }
  for (size_t i = 0; i < reply.headerCount; ++i)
    head.headers.add(reply.headers[i].name, reply.headers[i].value);
  head.hasContentLength = true;
  head.contentLength = body.size();
}

}  // namespace sluice::http
