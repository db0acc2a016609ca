#include "config/nginx/parser.h"

#include <glob.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/nginx/lexer.h"

namespace sluice::config::nginx {

namespace {

constexpr int kMaxIncludeDepth = 16;
constexpr int kMaxBlockDepth = 64;
constexpr size_t kMaxDirectives = 100000;
constexpr int kMaxFiles = 1000;
constexpr std::streamsize kMaxFileSize = 16 << 20;

bool hasGlobChars(std::string_view p) {
  return p.find_first_of("*?[") != std::string_view::npos;
}

class Reader {
 public:
  explicit Reader(std::string base) : base_(std::move(base)) {}

  // Parses one file's text into `out`. False after an error (in errors_).
  bool parse(std::string_view text, const std::string& file, std::vector<Directive>& out) {
    ++files_;
    Lexer lex(text);
    return block(lex, file, 0, false, out);
  }

  bool readFile(const std::string& path, const Where& from, std::vector<Directive>& out) {
    std::error_code ec;
    std::filesystem::path canon = std::filesystem::canonical(path, ec);
    const std::string key = ec ? path : canon.string();
    for (const auto& open : stack_) {
      if (open.first == key)
        return fail(from,
                    "include cycle: \"" + path + "\" is already being read (" + chain() + ")");
    }
    if (int(stack_.size()) > kMaxIncludeDepth)
      return fail(from, "includes nested more than " + std::to_string(kMaxIncludeDepth) +
                            " deep (" + chain() + ")");
    if (files_ >= kMaxFiles)
      return fail(from, "more than " + std::to_string(kMaxFiles) + " files included");
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      const int err = errno;
      return fail(from, "open() \"" + path + "\" failed (" + std::to_string(err) + ": " +
                            std::strerror(err) + ")");
    }
    std::ostringstream ss;
    char buf[65536];
    std::streamsize total = 0;
    while (f.read(buf, sizeof buf) || f.gcount() > 0) {
      total += f.gcount();
      if (total > kMaxFileSize) return fail(from, "\"" + path + "\" is larger than 16 MiB");
      ss.write(buf, f.gcount());
    }
    if (f.bad()) return fail(from, "read() \"" + path + "\" failed");
    stack_.emplace_back(key, path);
    const bool ok = parse(ss.str(), path, out);
    stack_.pop_back();
    return ok;
  }

  std::vector<Diag> errors;
  int files() const { return files_; }

 private:
  bool fail(const Where& at, std::string msg) {
    errors.push_back({at, std::move(msg)});
    return false;
  }

  std::string chain() const {
    std::string s;
    for (const auto& open : stack_) s += (s.empty() ? "" : " -> ") + open.second;
    return s;
  }

  std::string resolve(const std::string& p) const {
    if (p.starts_with("/") || base_.empty()) return p;
    return base_ + "/" + p;
  }

  bool include(const Directive& d, std::vector<Directive>& out) {
    if (d.block || d.args.size() != 1)
      return fail(d.at, "invalid number of arguments in \"include\" directive");
    const std::string path = resolve(d.args[0].text);
    if (!hasGlobChars(path)) return readFile(path, d.at, out);
    glob_t g{};
    const int rc = ::glob(path.c_str(), 0, nullptr, &g);
    if (rc == GLOB_NOMATCH) {
      globfree(&g);
      return true;
    }
    if (rc != 0) {
      globfree(&g);
      return fail(d.at, "glob() \"" + path + "\" failed");
    }
    std::vector<std::string> names(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    for (const auto& n : names) {
      std::error_code ec;
      if (std::filesystem::is_directory(n, ec)) continue;
      if (!readFile(n, d.at, out)) return false;
    }
    return true;
  }

  bool block(Lexer& lex, const std::string& file, int depth, bool inBlock,
             std::vector<Directive>& out) {
    Directive cur;
    bool started = false;  // the name may be an empty quoted word ('' in a map)
    for (;;) {
      Token t = lex.next();
      switch (t.kind) {
        case TokenKind::Error:
          return fail({file, t.line}, t.text);
        case TokenKind::Word:
          if (!started) {
            cur.name = t.text;
            cur.at = {file, t.line};
            started = true;
          } else {
            cur.args.push_back({std::move(t.text), t.quoted});
          }
          break;
        case TokenKind::Semicolon:
        case TokenKind::BlockStart: {
          const bool opens = t.kind == TokenKind::BlockStart;
          if (!started)
            return fail({file, t.line}, opens ? "unexpected \"{\"" : "unexpected \";\"");
          if (++count_ > kMaxDirectives)
            return fail(cur.at, "more than " + std::to_string(kMaxDirectives) + " directives");
          cur.block = opens;
          if (opens) {
            if (depth + 1 > kMaxBlockDepth)
              return fail(cur.at,
                          "blocks nested more than " + std::to_string(kMaxBlockDepth) + " deep");
            if (!block(lex, file, depth + 1, true, cur.children)) return false;
          }
          if (cur.name == "include") {
            if (!include(cur, out)) return false;
          } else {
            out.push_back(std::move(cur));
          }
          cur = Directive();
          started = false;
          break;
        }
        case TokenKind::BlockEnd:
          if (started || !inBlock) return fail({file, t.line}, "unexpected \"}\"");
          return true;
        case TokenKind::End:
          if (started)
            return fail({file, t.line}, "unexpected end of file, expecting \";\" or \"}\"");
          if (inBlock) return fail({file, t.line}, "unexpected end of file, expecting \"}\"");
          return true;
      }
    }
  }

  std::string base_;
  std::vector<std::pair<std::string, std::string>> stack_;  // (canonical key, path) being read
  size_t count_ = 0;
  int files_ = 0;
};

std::string folderOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

ParseResult parseFile(const std::string& path) {
  Reader r(folderOf(path));
  ParseResult res;
  r.readFile(path, {path, 0}, res.directives);
  res.errors = std::move(r.errors);
  res.files = r.files();
  if (!res.errors.empty()) res.directives.clear();
  return res;
}

ParseResult parseText(std::string_view text, const std::string& name,
                      const std::string& includeBase) {
  Reader r(includeBase);
  ParseResult res;
  r.parse(text, name, res.directives);
  res.errors = std::move(r.errors);
  res.files = r.files();
  if (!res.errors.empty()) res.directives.clear();
  return res;
}

}  // namespace sluice::config::nginx
