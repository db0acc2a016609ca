// nginx's configuration tokens, read as nginx reads them (ngx_conf_read_token): words separated
// by white space, ';' '{' '}' as punctuation, '#' comments (only where a word could start),
// "..." and '...' quoting, a backslash that keeps the next character inside a word, "${name}"
// that does not open a block, and, after a closing quote, only white space, ';', '{' or ')'.
#pragma once

#include <string>
#include <string_view>

namespace sluice::config::nginx {

enum class TokenKind { Word, Semicolon, BlockStart, BlockEnd, End, Error };

struct Token {
  TokenKind kind = TokenKind::End;
  std::string text;  // Word: escapes applied; Error: the message
  bool quoted = false;
  int line = 0;  // where the token starts (Error: where it was found)
};

class Lexer {
 public:
  explicit Lexer(std::string_view text) : s_(text) {}

  Token next();

 private:
  void skipSpaceAndComments();
  Token quotedWord();
  Token plainWord();
  Token error(std::string msg) const;

  std::string_view s_;
  size_t pos_ = 0;
  int line_ = 1;
};

// nginx's escape processing of a word: \" \' \\ become the character, \t \r \n the control
// character; a backslash before anything else stays (so regexes keep "\.").
std::string unescapeWord(std::string_view raw);

}  // namespace sluice::config::nginx
