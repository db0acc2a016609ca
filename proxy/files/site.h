// A static route's files: the directory, how request paths map into it, and the file-system
// lookup that finds what to answer (try_files, index, precompressed siblings). The lookup runs
// in libuv's thread pool (it opens, stats and may read), never on a worker's loop; everything
// else about the answer is decided on the loop (proxy/files/conditional.h,
// proxy/files/file_responder.h).
//
// Safe by construction: every candidate is opened below the directory with openat2(2)
// RESOLVE_BENEATH (no "..", no absolute or escaping symlinks, no magic links), or, where the
// kernel lacks openat2, opened and then checked against the directory's real path. The path
// handed to the lookup is already percent-decoded and free of NUL and dot segments.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::files {

// File extension -> media type, from /etc/mime.types (Debian's media-types), with the common web
// types built in when that file is missing.
class MimeTypes {
 public:
  static std::shared_ptr<const MimeTypes> load(const std::string& path = "/etc/mime.types");
  // The type for `fileName`'s extension (case-insensitive); application/octet-stream when
  // unknown.
  std::string_view forFile(std::string_view fileName) const;
  size_t size() const { return types_.size(); }

 private:
  std::unordered_map<std::string, std::string> types_;
};

struct Site {
  std::string dir;          // root or alias directory (or file, for an exact alias route)
  bool alias = false;       // the route's path prefix is replaced by `dir`
  size_t prefixLength = 0;  // alias: the bytes of the request path that the route matched
  std::vector<std::string> index;
  std::vector<std::string> tryFiles;  // empty: the path itself (directories redirect to "/")
  std::string cacheControl;
  bool precompressed = false;
  uint64_t cacheValidMs = 0;  // small files' lookups reused this long per worker (FileCache)
  std::shared_ptr<const MimeTypes> mime;
};

// One lookup: what the loop asks, what the thread pool answers.
struct Lookup {
  enum class Outcome : uint8_t {
    File,      // fd/size/mtime/contentType (+ body when small)
    Redirect,  // a directory asked for without its '/': 301 to the path + "/"
    Status,    // answer `status` (403, 404, 500, or a try_files =CODE)
  };
  // in
  const Site* site = nullptr;
  std::string uri;        // decoded path below the site, starting with '/'
  bool acceptBr = false;  // precompressed siblings the client takes
  bool acceptGzip = false;
  size_t readLimit = 0;  // files up to this size are read into `body`
  // out
  Outcome outcome = Outcome::Status;
  int status = 404;
  int fd = -1;  // File: open for reading (the owner closes it)
  uint64_t size = 0;
  std::time_t mtime = 0;
  std::string_view contentType;
  std::string_view encoding;  // "br", "gzip" or "" (identity)
  std::string body;           // File with size <= readLimit: the whole file
  bool bodyRead = false;
  std::string error;  // Status 500: what failed (for the error log)

  void closeFile();
};

// Blocking: opens, stats and maybe reads (thread pool only).
void runLookup(Lookup& l);

// The request path as the files see it: `rawPath` (no query) without the alias prefix,
// percent-decoded. False for paths that cannot name a file: a NUL, a decoded "." or ".."
// segment, or a malformed escape.
bool filePath(const Site& site, std::string_view rawPath, std::string& out);

}  // namespace sluice::files
