// The parsed form of an nginx configuration: directives with their arguments, their position
// (file and line) and, for block directives, their children. `include` is already expanded:
// the directives of the included files take its place, each with its own file and line.
#pragma once

#include <string>
#include <vector>

namespace sluice::config::nginx {

// Where a directive (or a problem) is: "conf.d/app.conf:12". `file` is the path as nginx would
// open it (the main file as given; included files joined to its folder).
struct Where {
  std::string file;
  int line = 0;

  std::string str() const { return line > 0 ? file + ":" + std::to_string(line) : file; }
};

struct Arg {
  std::string text;     // escapes already applied (\" \' \\ \t \r \n), as nginx does
  bool quoted = false;  // written in "..." or '...'
};

struct Directive {
  std::string name;
  std::vector<Arg> args;
  Where at;
  bool block = false;  // `name args { ... }`
  std::vector<Directive> children;

  const std::string& arg(size_t i) const { return args[i].text; }
};

struct Diag {
  Where at;
  std::string message;

  std::string str() const { return at.str() + ": " + message; }
};

}  // namespace sluice::config::nginx
