// A small blocking HTTP/1.1 client for the exporter thread: POSTs a JSON body to one
// http:// endpoint over a keep-alive connection, every step bounded by a deadline. Never used
// on a worker's loop.
#pragma once

#include <cstdint>
#include <string>

namespace sluice::tracing {

class OtlpClient {
 public:
  OtlpClient() = default;
  ~OtlpClient() { close(); }
  OtlpClient(const OtlpClient&) = delete;
  OtlpClient& operator=(const OtlpClient&) = delete;

  // A new endpoint closes the connection to the old one.
  void setEndpoint(const std::string& host, uint16_t port, const std::string& path);
  // The response status, or -1 when no answer came (resolve, connect, send or read failed or
  // timed out; `err` says which). The connection is kept for the next POST when the server
  // allows it.
  int post(const std::string& body, int timeoutMs, std::string& err);
  void close();

 private:
  bool connect(int64_t deadlineMs, std::string& err);

  std::string host_, path_, hostHeader_;
  uint16_t port_ = 0;
  int fd_ = -1;
};

}  // namespace sluice::tracing
