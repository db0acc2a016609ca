// Reads an nginx configuration into directives (config/nginx/syntax.h), expanding `include`
// as nginx does: a relative path is relative to the folder of the main file (nginx's conf
// prefix), a path with * ? or [ is a glob (sorted; no match is not an error), a plain path
// that cannot be opened is an error. Include cycles, includes nested more than 16 deep,
// blocks nested more than 64 deep and more than 100,000 directives or 1,000 files are errors
// instead of endless work. The first syntax error stops the read, as in nginx, with its
// FILE:LINE and nginx's wording (`unexpected "}"`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/nginx/syntax.h"

namespace sluice::config::nginx {

struct ParseResult {
  std::vector<Directive> directives;  // the main context
  std::vector<Diag> errors;           // empty on success; else the one error that stopped it
  int files = 0;                      // files read (the main one and every included one)
};

// Reads the file at `path`; includes are resolved against its folder.
ParseResult parseFile(const std::string& path);

// Parses `text` as the file `name`; includes are resolved against `includeBase` (a folder,
// "" = the current directory).
ParseResult parseText(std::string_view text, const std::string& name,
                      const std::string& includeBase);

}  // namespace sluice::config::nginx
