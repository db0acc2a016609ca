#include "proxy/files/site.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sluice::files {

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

// Used when /etc/mime.types is missing (a minimal container): what a web app's build serves.
constexpr const char* kBuiltinTypes[][2] = {
    {"html", "text/html"},
    {"htm", "text/html"},
    {"css", "text/css"},
    {"js", "text/javascript"},
    {"mjs", "text/javascript"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/vnd.microsoft.icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"webmanifest", "application/manifest+json"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
};

// openat2() is missing on kernels before 5.6 and may be refused by a container's seccomp
// profile: then the fallback (open, then check the real path) is used for good.
std::atomic<bool> noOpenat2{false};

bool insideDir(int fd, const std::string& dirReal) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char real[PATH_MAX];
  const ssize_t n = ::readlink(link, real, sizeof real - 1);
  if (n <= 0) return false;
  const std::string_view p(real, size_t(n));
  if (dirReal == "/") return true;
  return p == dirReal || (p.size() > dirReal.size() && p.compare(0, dirReal.size(), dirReal) == 0 &&
                          p[dirReal.size()] == '/');
}

class Resolver {
 public:
  Resolver(Lookup& l, int rootFd) : l_(l), root_(rootFd) {}

  // Opens `rel` (no leading '/') below the directory; the fd, or -errno.
  int open(std::string_view relPath) {
    std::string rel(relPath);
    while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
    if (rel.empty()) rel = ".";
    const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    if (!noOpenat2.load(std::memory_order_relaxed)) {
      open_how how{};
      how.flags = uint64_t(flags);
      how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
      const long fd = syscall(SYS_openat2, root_, rel.c_str(), &how, sizeof how);
      if (fd >= 0) return int(fd);
      if (errno != ENOSYS && errno != EPERM) return -errno;
      noOpenat2.store(true, std::memory_order_relaxed);
    }
    const int fd = ::openat(root_, rel.c_str(), flags);
    if (fd < 0) return -errno;
    if (dirReal_.empty()) {
      char real[PATH_MAX];
      if (::realpath(l_.site->dir.c_str(), real) == nullptr) {
        ::close(fd);
        return -ENOENT;
      }
      dirReal_ = real;
    }
    if (!insideDir(fd, dirReal_)) {
      ::close(fd);
      return -EXDEV;
    }
    return fd;
  }

  int openSelf() {
    const int fd = ::open(l_.site->dir.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    return fd < 0 ? -errno : fd;
  }

  enum class Kind : uint8_t { Missing, Denied, File, Dir, Failed };
  // Opens and classifies one candidate (a File or Dir keeps its fd in fd_). `self`: the
  // configured path itself (an alias that names a file), which needs no containment check.
  Kind probe(std::string_view rel, bool self = false) {
    closeProbe();
    const int fd = self ? openSelf() : open(rel);
    if (fd < 0) {
      switch (-fd) {
        case ENOENT:
        case ENOTDIR:
        case ELOOP:
        case EXDEV:
        case ENAMETOOLONG:
        case ENXIO:
          return Kind::Missing;
        case EACCES:
        case EPERM:
          return Kind::Denied;
        default:
          l_.error = std::string("open: ") + std::strerror(-fd);
          return Kind::Failed;
      }
    }
    fd_ = fd;
    if (::fstat(fd, &st_) != 0) {
      l_.error = std::string("fstat: ") + std::strerror(errno);
      return Kind::Failed;
    }
    if (S_ISREG(st_.st_mode)) return Kind::File;
    if (S_ISDIR(st_.st_mode)) return Kind::Dir;
    return Kind::Missing;  // devices, FIFOs, sockets are never served
  }

  void closeProbe() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void status(int code) {
    closeProbe();
    l_.outcome = Lookup::Outcome::Status;
    l_.status = code;
  }

  void fail(Kind k) {
    if (k == Kind::Failed)
      status(500);
    else
      status(k == Kind::Denied ? 403 : 404);
  }

  // The directory `rel` (open in fd_) through its index files; 403 without one.
  void serveIndex(std::string rel) {
    if (rel.empty() || rel.back() != '/') rel.push_back('/');
    for (const std::string& name : l_.site->index) {
      const Kind k = probe(rel + name);
      if (k == Kind::File) {
        serveFile(rel + name);
        return;
      }
      if (k == Kind::Failed) {
        fail(k);
        return;
      }
    }
    status(403);  // no directory listings
  }

  // fd_ is the regular file `rel`: pick a precompressed sibling, fill the answer.
  void serveFile(const std::string& rel) {
    l_.encoding = {};
    if (l_.site->precompressed && (l_.acceptBr || l_.acceptGzip)) {
      const int original = fd_;
      const struct stat originalSt = st_;
      fd_ = -1;
      for (const char* coding : {"br", "gzip"}) {
        const bool br = coding[0] == 'b';
        if (!(br ? l_.acceptBr : l_.acceptGzip)) continue;
        if (probe(rel + (br ? ".br" : ".gz")) == Kind::File) {
          l_.encoding = coding;
          break;
        }
        closeProbe();
      }
      if (l_.encoding.empty()) {
        fd_ = original;
        st_ = originalSt;
      } else {
        ::close(original);
      }
    }
    l_.outcome = Lookup::Outcome::File;
    l_.contentType = l_.site->mime->forFile(rel);
    l_.size = uint64_t(st_.st_size);
    l_.mtime = st_.st_mtim.tv_sec;
    l_.fd = fd_;
    fd_ = -1;
    if (l_.size <= l_.readLimit) readAll();
  }

  void readAll() {
    l_.body.resize(l_.size);
    size_t got = 0;
    while (got < l_.size) {
      const ssize_t n = ::pread(l_.fd, l_.body.data() + got, l_.size - got, off_t(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // shrank or failed: the answer is made from what the stat said
      got += size_t(n);
    }
    if (got != l_.size) {
      l_.closeFile();
      l_.error = "read: the file changed while it was read";
      status(500);
      return;
    }
    l_.bodyRead = true;
  }

  ~Resolver() { closeProbe(); }
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

 private:
  Lookup& l_;
  int root_;
  int fd_ = -1;
  struct stat st_ {};
  std::string dirReal_;
};

std::string expand(std::string_view tpl, std::string_view uri) {
  std::string out;
  for (size_t i = 0; i < tpl.size();) {
    if (tpl.compare(i, 4, "$uri") == 0) {
      out.append(uri);
      i += 4;
    } else {
      out.push_back(tpl[i++]);
    }
  }
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::shared_ptr<const MimeTypes> MimeTypes::load(const std::string& path) {
  auto m = std::make_shared<MimeTypes>();
  std::ifstream in(path);
  std::string line;
  while (in && std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string type, ext;
    if (!(words >> type)) continue;
    while (words >> ext) {
      for (char& c : ext) c = lower(c);
      m->types_.emplace(ext, type);  // the first mention wins
    }
  }
  for (const auto& t : kBuiltinTypes) m->types_.emplace(t[0], t[1]);
  return m;
}

std::string_view MimeTypes::forFile(std::string_view fileName) const {
  const size_t slash = fileName.rfind('/');
  if (slash != std::string_view::npos) fileName.remove_prefix(slash + 1);
  const size_t dot = fileName.rfind('.');
  if (dot != std::string_view::npos && dot + 1 < fileName.size() && dot + 16 > fileName.size()) {
    char ext[16];
    size_t n = 0;
    for (char c : fileName.substr(dot + 1)) ext[n++] = lower(c);
    auto it = types_.find(std::string(ext, n));
    if (it != types_.end()) return it->second;
  }
  return "application/octet-stream";
}

void Lookup::closeFile() {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void runLookup(Lookup& l) {
  const Site& s = *l.site;
  l.outcome = Lookup::Outcome::Status;
  l.status = 404;
  const int root = ::open(s.dir.c_str(), O_PATH | O_CLOEXEC);
  if (root < 0) {
    l.status = errno == EACCES ? 403 : 404;
    return;
  }
  struct stat rootSt {};
  if (::fstat(root, &rootSt) != 0) {
    ::close(root);
    l.status = 500;
    l.error = std::string("fstat: ") + std::strerror(errno);
    return;
  }
  {
    Resolver r(l, root);
    if (!S_ISDIR(rootSt.st_mode)) {
      // An exact route aliased to one file ("location = /favicon.ico { alias ...; }").
      if (s.alias && (l.uri.empty() || l.uri == "/")) {
        const Resolver::Kind k = r.probe("", true);
        if (k == Resolver::Kind::File)
          r.serveFile(s.dir);
        else
          r.fail(k);
      }
    } else if (s.tryFiles.empty()) {
      const Resolver::Kind k = r.probe(l.uri);
      if (k == Resolver::Kind::File) {
        r.serveFile(l.uri);
      } else if (k == Resolver::Kind::Dir) {
        if (!l.uri.empty() && l.uri.back() == '/') {
          r.serveIndex(l.uri);
        } else {
          r.closeProbe();
          l.outcome = Lookup::Outcome::Redirect;
          l.status = 301;
        }
      } else {
        r.fail(k);
      }
    } else {
      for (size_t i = 0; i < s.tryFiles.size(); ++i) {
        const std::string& e = s.tryFiles[i];
        const bool last = i + 1 == s.tryFiles.size();
        if (e[0] == '=') {
          r.status(std::atoi(e.c_str() + 1));
          break;
        }
        const std::string p = expand(e, l.uri);
        const bool wantDir = !p.empty() && p.back() == '/';
        const Resolver::Kind k = r.probe(p);
        if (k == Resolver::Kind::Failed) {
          r.fail(k);
          break;
        }
        if (wantDir && k == Resolver::Kind::Dir) {
          r.serveIndex(p);
          break;
        }
        if (!wantDir && k == Resolver::Kind::File) {
          r.serveFile(p);
          break;
        }
        if (last) r.fail(k == Resolver::Kind::Denied ? k : Resolver::Kind::Missing);
      }
    }
  }
  ::close(root);
}

bool filePath(const Site& site, std::string_view rawPath, std::string& out) {
  out.clear();
  if (site.alias) rawPath.remove_prefix(std::min(site.prefixLength, rawPath.size()));
  if (rawPath.empty() || rawPath[0] != '/') out.push_back('/');
  for (size_t i = 0; i < rawPath.size(); ++i) {
    char c = rawPath[i];
    if (c == '%') {
      if (i + 2 >= rawPath.size()) return false;
      const int hi = hexValue(rawPath[i + 1]), lo = hexValue(rawPath[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = char(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return false;
    out.push_back(c);
  }
  // No "." or ".." segment after decoding (the raw path had none: splitTarget refuses them).
  for (size_t start = 0; start <= out.size();) {
    size_t end = out.find('/', start);
    if (end == std::string::npos) end = out.size();
    const std::string_view seg(out.data() + start, end - start);
    if (seg == "." || seg == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace sluice::files
