// The client's address as the proxy should believe it: the TCP peer, or — when the peer is a
// trusted proxy (server.trusted_proxies) — the right-most X-Forwarded-For entry that is not
// itself trusted (nginx's real_ip_recursive).
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/schema.h"
#include "proxy/http/message.h"

namespace sluice::net {

// Returns the client IP. `peerText` is the peer address as text; `out` holds the result when
// it comes from a header.
std::string_view realClientIp(std::string_view peerText, const http::HeaderMap& headers,
                              const std::vector<config::Cidr>& trusted, std::string& out);

}  // namespace sluice::net
