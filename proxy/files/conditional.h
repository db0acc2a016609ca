// The HTTP rules of a file answer that need no file system: validators (ETag, Last-Modified as
// an HTTP-date), conditional requests (RFC 9110 13: If-Match, If-Unmodified-Since,
// If-None-Match, If-Modified-Since, If-Range), a single byte Range (RFC 9110 14) and the
// content coding a client accepts (Accept-Encoding with q-values). Pure functions, on the
// worker's loop; the file's facts come from the lookup done in the thread pool.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace sluice::files {

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), appended to `out`.
void appendHttpDate(std::time_t t, std::string& out);
// An IMF-fixdate (also the obsolete RFC 850 and asctime forms); -1 when it is none.
std::time_t parseHttpDate(std::string_view s);

// nginx's ETag for the same file ("<mtime hex>-<size hex>"), so caches filled behind nginx stay
// valid after the switch.
void appendEtag(std::time_t mtime, uint64_t size, std::string& out);

// What a request's conditional and Range headers ask of a file with these validators.
struct Conditions {
  std::string_view ifMatch, ifNoneMatch, ifModifiedSince, ifUnmodifiedSince, ifRange, range;
};

struct Decision {
  int status = 200;     // 200, 206, 304, 412, 416
  uint64_t offset = 0;  // 200/206: the bytes to send
  uint64_t length = 0;
};

// RFC 9110 13.2.2 evaluation order, then the Range (a single range; several, or a malformed
// header, are ignored and the whole file is sent, as RFC 9110 14.2 allows).
Decision evaluate(const Conditions& c, std::string_view etag, std::time_t mtime, uint64_t size);

// True when the comma-separated entity-tag list `list` (or "*") matches `etag`; `weak` uses the
// weak comparison (If-None-Match), otherwise W/ tags never match (If-Match, If-Range).
bool etagListMatches(std::string_view list, std::string_view etag, bool weak);

// Accept-Encoding: does the client take `coding` ("br", "gzip")? A q=0 refuses; "*" covers
// codings not listed; no header means identity only.
bool acceptsEncoding(std::string_view acceptEncoding, std::string_view coding);

}  // namespace sluice::files
