#include "proxy/files/file_responder.h"

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <list>
#include <string>
#include <unordered_map>

#include "config/schema.h"
#include "proxy/files/conditional.h"
#include "proxy/http/rewrite.h"
#include "proxy/observe/log.h"

namespace sluice::files {

namespace {
constexpr size_t kReadLimit = 32 * 1024;      // read by the lookup, sent in one write
constexpr size_t kChunk = 64 * 1024;          // TLS: one thread-pool read at a time
constexpr size_t kHighWater = 256 * 1024;     // TLS: wait for the client above this
constexpr size_t kSendfileStep = 256 * 1024;  // plain: one sendfile(2) call
constexpr int kStepsPerTurn = 4;              // then let the loop serve others

// The Date header value, formatted once per second per thread.
std::string_view httpDateNow() {
  thread_local std::time_t last = 0;
  thread_local std::string text;
  const std::time_t now = std::time(nullptr);
  if (now != last) {
    last = now;
    text.clear();
    appendHttpDate(now, text);
  }
  return text;
}

std::string_view errorCode(int status) {
  switch (status) {
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 500:
      return "file_error";
    default:
      return "file_status";
  }
}
}  // namespace

// A small file's lookup, reused by one worker for the site's cache_valid.
struct CachedFile {
  std::shared_ptr<const Site> site;  // keeps the key's address unique while the entry lives
  std::string key;
  std::string_view contentType;  // into site->mime
  std::string_view encoding;     // a literal
  uint64_t size = 0;
  std::time_t mtime = 0;
  std::string body;
  uint64_t expiresMs = 0;
};

namespace {

// Per worker thread, LRU, bounded in entries and bytes. Entries are evicted only by put(),
// which runs in thread-pool completions, never inside a codec callback: a body handed to the
// stream by a hit stays valid until that callback's flush.
class FileCache {
 public:
  static FileCache& forThread() {
    thread_local FileCache cache;
    return cache;
  }

  static void makeKey(const Site* site, uint8_t variant, std::string_view uri, std::string& key) {
    const auto addr = reinterpret_cast<uintptr_t>(site);
    key.assign(reinterpret_cast<const char*>(&addr), sizeof addr);
    key.push_back(char(variant));
    key.append(uri);
  }

  const CachedFile* find(const std::string& key, uint64_t nowMs) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    if (it->second->expiresMs <= nowMs) return nullptr;  // put() refreshes it
    lru_.splice(lru_.begin(), lru_, it->second);
    return &*it->second;
  }

  void put(std::string key, const std::shared_ptr<const Site>& site, const Lookup& l,
           uint64_t nowMs) {
    if (auto it = index_.find(key); it != index_.end()) drop(it->second);
    if (l.body.size() > kMaxBytes / 16) return;
    lru_.emplace_front();
    CachedFile& e = lru_.front();
    e.site = site;
    e.key = std::move(key);
    e.contentType = l.contentType;
    e.encoding = l.encoding;
    e.size = l.size;
    e.mtime = l.mtime;
    e.body = l.body;
    e.expiresMs = nowMs + site->cacheValidMs;
    bytes_ += e.body.size() + e.key.size();
    index_.emplace(e.key, lru_.begin());
    while (index_.size() > kMaxEntries || bytes_ > kMaxBytes) drop(std::prev(lru_.end()));
  }

 private:
  static constexpr size_t kMaxEntries = 1024;
  static constexpr size_t kMaxBytes = 16u << 20;
  using List = std::list<CachedFile>;

  void drop(List::iterator it) {
    bytes_ -= it->body.size() + it->key.size();
    index_.erase(it->key);
    lru_.erase(it);
  }

  List lru_;
  std::unordered_map<std::string, List::iterator> index_;
  size_t bytes_ = 0;
};

}  // namespace

struct FileResponder::Job {
  uv_work_t work{};
  uv_fs_t fs{};
  uv_loop_t* loop = nullptr;
  FileResponder* owner = nullptr;  // null: detached (the exchange moved on)
  bool busy = false;               // a thread-pool request is in flight
  std::shared_ptr<const Site> site;
  Lookup lookup;
  std::string buf;                         // TLS chunk reads
  std::string text;                        // header values (ETag, Last-Modified, Content-Range)
  std::string cacheKey;                    // set when the site caches small files
  const std::string* body = &lookup.body;  // the lookup's or a cache entry's

  Job() = default;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
  ~Job() { lookup.closeFile(); }
};

bool FileResponder::start(uv_loop_t* loop, std::shared_ptr<const Site> site,
                          const http::RequestHead& req, std::string_view rawPath,
                          std::string_view query, ServerStream& stream, FileCallbacks& cb,
                          bool& answered) {
  answered = false;
  cancel();
  stream_ = &stream;
  cb_ = &cb;
  req_ = &req;
  rawPath_ = rawPath;
  query_ = query;
  remaining_ = 0;
  auto* j = new Job;
  j->loop = loop;
  j->owner = this;
  j->site = std::move(site);
  Lookup& l = j->lookup;
  l.site = j->site.get();
  if (!filePath(*l.site, rawPath, l.uri)) {
    delete j;
    return false;
  }
  if (l.site->precompressed) {
    const std::string_view ae = req.headers.get("Accept-Encoding");
    l.acceptBr = acceptsEncoding(ae, "br");
    l.acceptGzip = acceptsEncoding(ae, "gzip");
  }
  l.readLimit = req.method == "HEAD" ? 0 : kReadLimit;
  if (l.site->cacheValidMs > 0) {
    const uint8_t variant = uint8_t(l.acceptBr) | uint8_t(l.acceptGzip << 1);
    FileCache::makeKey(l.site, variant, l.uri, j->cacheKey);
    if (const CachedFile* hit = FileCache::forThread().find(j->cacheKey, uv_now(loop))) {
      l.outcome = Lookup::Outcome::File;
      l.contentType = hit->contentType;
      l.encoding = hit->encoding;
      l.size = hit->size;
      l.mtime = hit->mtime;
      l.bodyRead = true;
      j->body = &hit->body;
      job_ = j;
      answered = true;
      sync_ = true;
      respond(*j);
      sync_ = false;
      return true;
    }
  }
  j->work.data = j;
  j->busy = true;
  job_ = j;
  // libuv refuses only a null work callback.
  const int queued = uv_queue_work(loop, &j->work, runWork, afterWork);
  (void)queued;
  return true;
}

void FileResponder::runWork(uv_work_t* w) {
  runLookup(static_cast<Job*>(w->data)->lookup);
}

void FileResponder::afterWork(uv_work_t* w, int /*status*/) {
  auto* j = static_cast<Job*>(w->data);
  j->busy = false;
  const Lookup& l = j->lookup;
  if (!j->cacheKey.empty() && l.outcome == Lookup::Outcome::File && l.bodyRead) {
    FileCache::forThread().put(j->cacheKey, j->site, l, uv_now(j->loop));
  }
  if (j->owner == nullptr) {
    delete j;
    return;
  }
  j->owner->onLookup();
}

void FileResponder::cancel() {
  if (job_ == nullptr) return;
  Job* j = job_;
  job_ = nullptr;
  if (j->busy)
    j->owner = nullptr;  // it frees itself when the thread pool is done with it
  else
    delete j;
}

void FileResponder::onLookup() {
  Job& j = *job_;
  const Lookup& l = j.lookup;
  if (l.outcome == Lookup::Outcome::File) {
    respond(j);
    return;
  }
  http::LocalReply r;
  std::string location;
  if (l.outcome == Lookup::Outcome::Redirect) {
    // A directory without its '/': relative to this host, so it is right behind any proxy.
    location.assign(rawPath_).append("/").append(query_);
    r.status = 301;
    r.header("Location", location);
  } else {
    r.status = l.status;
    r.code = errorCode(l.status);
    if (l.status == 500)
      observe::logEvent(config::LogLevel::Error, "static file lookup failed",
                        {{"path", l.uri}, {"dir", l.site->dir}, {"error", l.error}});
  }
  cancel();
  cb_->fileReply(r);
}

void FileResponder::respond(Job& j) {
  const Lookup& l = j.lookup;
  const Site& site = *j.site;
  const http::HeaderMap& h = req_->headers;
  Conditions c;
  c.ifMatch = h.get("If-Match");
  c.ifNoneMatch = h.get("If-None-Match");
  c.ifModifiedSince = h.get("If-Modified-Since");
  c.ifUnmodifiedSince = h.get("If-Unmodified-Since");
  c.ifRange = h.get("If-Range");
  c.range = h.get("Range");
  // Offsets into j.text: ETag, Last-Modified, Content-Range.
  std::string& t = j.text;
  t.clear();
  appendEtag(l.mtime, l.size, t);
  const size_t etagLen = t.size();
  appendHttpDate(l.mtime, t);
  const size_t lmLen = t.size() - etagLen;
  const std::string_view etag(t.data(), etagLen);
  const Decision d = evaluate(c, etag, l.mtime, l.size);
  if (d.status == 412 || d.status == 416) {
    http::LocalReply r(d.status, d.status == 412 ? "precondition_failed" : "range_not_satisfiable");
    std::string range;
    if (d.status == 416) {
      range = "bytes */" + std::to_string(l.size);
      r.header("Content-Range", range);
    }
    cancel();
    cb_->fileReply(r);
    return;
  }
  if (d.status == 206) {
    t.append("bytes ")
        .append(std::to_string(d.offset))
        .append("-")
        .append(std::to_string(d.offset + d.length - 1))
        .append("/")
        .append(std::to_string(l.size));
  }
  const std::string_view lastModified(t.data() + etagLen, lmLen);
  const std::string_view contentRange(t.data() + etagLen + lmLen, t.size() - etagLen - lmLen);

  head_.clear();
  head_.status = d.status;
  head_.reason.assign(http::reasonPhrase(d.status));
  http::HeaderMap& out = head_.headers;
  out.add("Date", httpDateNow());
  if (d.status != 304) out.add("Content-Type", l.contentType);
  out.add("Last-Modified", lastModified);
  out.add("ETag", t.substr(0, etagLen));
  if (!site.cacheControl.empty()) out.add("Cache-Control", site.cacheControl);
  if (site.precompressed) out.add("Vary", "Accept-Encoding");
  if (d.status != 304) {
    if (!l.encoding.empty()) out.add("Content-Encoding", l.encoding);
    out.add("Accept-Ranges", "bytes");
  }
  if (d.status == 206) out.add("Content-Range", contentRange);
  head_.hasContentLength = d.status != 304;
  head_.contentLength = d.length;
  const bool noBody = d.status == 304 || req_->method == "HEAD" || d.length == 0;
  Job* const self = job_;
  cb_->fileHead(head_, noBody);
  if (job_ != self) return;  // the head could not be sent (the connection went away)
  if (noBody) {
    complete();
    return;
  }
  offset_ = d.offset;
  remaining_ = d.length;
  if (l.bodyRead)
    mode_ = Mode::Memory;
  else
    mode_ = stream_->canSendFile() ? Mode::Sendfile : Mode::Read;
  sendBody();
}

void FileResponder::sendBody() {
  Job* const j = job_;
  switch (mode_) {
    case Mode::Memory: {
      const size_t n = size_t(remaining_);
      stream_->encodeData(j->body->data() + offset_, n);
      remaining_ = 0;
      cb_->fileBodySent(n);
      // The bytes are copied or sent before the job goes. A cache hit answers inside the
      // codec's callback, which flushes at its end (the cache keeps the body until then).
      if (!sync_) stream_->flush();
      if (job_ == j) complete();
      return;
    }
    case Mode::Sendfile: {
      for (int step = 0; remaining_ > 0; ++step) {
        if (step == kStepsPerTurn) {
          stream_->awaitWritable();  // a fast client: let the loop serve others meanwhile
          return;
        }
        const long n = stream_->sendFile(j->lookup.fd, offset_,
                                         size_t(std::min<uint64_t>(remaining_, kSendfileStep)));
        if (job_ != j) return;
        if (n < 0) {
          broken();
          return;
        }
        if (n == 0) return;  // the stream calls onWritable() when the socket takes more
        offset_ += uint64_t(n);
        remaining_ -= uint64_t(n);
        cb_->fileBodySent(size_t(n));
      }
      complete();
      return;
    }
    case Mode::Read:
      readNext();
      return;
  }
}

void FileResponder::readNext() {
  Job* const j = job_;
  if (stream_->queuedBytes() > kHighWater) return;  // onWritable() goes on
  if (j->buf.size() < kChunk) j->buf.resize(kChunk);
  const size_t n = size_t(std::min<uint64_t>(remaining_, kChunk));
  uv_buf_t b = uv_buf_init(j->buf.data(), unsigned(n));
  j->fs.data = j;
  j->busy = true;
  if (uv_fs_read(j->loop, &j->fs, j->lookup.fd, &b, 1, int64_t(offset_), afterRead) != 0) {
    j->busy = false;
    broken();
  }
}

void FileResponder::afterRead(uv_fs_t* req) {
  auto* j = static_cast<Job*>(req->data);
  const ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  j->busy = false;
  if (j->owner == nullptr) {
    delete j;
    return;
  }
  j->owner->onRead(n);
}

void FileResponder::onRead(ssize_t n) {
  Job* const j = job_;
  if (n <= 0) {  // a read error, or the file shrank: the client must not see a short answer
    observe::logEvent(config::LogLevel::Warn, "static file read failed or file shrank",
                      {{"path", j->lookup.uri}});
    broken();
    return;
  }
  const size_t len = std::min<size_t>(size_t(n), size_t(remaining_));
  stream_->encodeData(j->buf.data(), len);
  offset_ += len;
  remaining_ -= len;
  cb_->fileBodySent(len);
  stream_->flush();
  if (job_ != j) return;
  if (remaining_ == 0)
    complete();
  else
    readNext();
}

void FileResponder::onWritable() {
  if (job_ == nullptr || job_->busy || remaining_ == 0 || mode_ == Mode::Memory) return;
  sendBody();
}

void FileResponder::complete() {
  cancel();
  cb_->fileEnd();
}

void FileResponder::broken() {
  cancel();
  cb_->fileBroken();
}

}  // namespace sluice::files
