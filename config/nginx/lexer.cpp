#include "config/nginx/lexer.h"

namespace sluice::config::nginx {

namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string quoteChar(char c) {
  if (c == '"') return "'\"'";
  return std::string("\"") + c + "\"";
}

}  // namespace

std::string unescapeWord(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\\' || i + 1 == raw.size()) {
      out.push_back(raw[i]);
      continue;
    }
    switch (raw[i + 1]) {
      case '"':
      case '\'':
      case '\\':
        out.push_back(raw[++i]);
        break;
      case 't':
        out.push_back('\t');
        ++i;
        break;
      case 'r':
        out.push_back('\r');
        ++i;
        break;
      case 'n':
        out.push_back('\n');
        ++i;
        break;
      default:
        out.push_back('\\');
    }
  }
  return out;
}

Token Lexer::error(std::string msg) const {
  Token t;
  t.kind = TokenKind::Error;
  t.text = std::move(msg);
  t.line = line_;
  return t;
}

void Lexer::skipSpaceAndComments() {
  while (pos_ < s_.size()) {
    const char c = s_[pos_];
    if (isSpace(c)) {
      if (c == '\n') ++line_;
      ++pos_;
    } else if (c == '#') {
      while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
    } else {
      return;
    }
  }
}

Token Lexer::next() {
  skipSpaceAndComments();
  Token t;
  t.line = line_;
  if (pos_ == s_.size()) return t;  // End
  switch (s_[pos_]) {
    case ';':
      ++pos_;
      t.kind = TokenKind::Semicolon;
      return t;
    case '{':
      ++pos_;
      t.kind = TokenKind::BlockStart;
      return t;
    case '}':
      ++pos_;
      t.kind = TokenKind::BlockEnd;
      return t;
    case '"':
    case '\'':
      return quotedWord();
    default:
      return plainWord();
  }
}

Token Lexer::quotedWord() {
  Token t;
  t.kind = TokenKind::Word;
  t.quoted = true;
  t.line = line_;
  const char q = s_[pos_++];
  const size_t start = pos_;
  bool closed = false;
  while (pos_ < s_.size()) {
    const char c = s_[pos_++];
    if (c == '\n') ++line_;
    if (c == '\\' && pos_ < s_.size()) {
      if (s_[pos_] == '\n') ++line_;
      ++pos_;
      continue;
    }
    if (c == q) {
      closed = true;
      break;
    }
  }
  if (!closed) return error("unexpected end of file, expecting \";\" or \"}\"");
  t.text = unescapeWord(s_.substr(start, pos_ - 1 - start));
  // After a closing quote nginx wants a separator; ')' closes an `if (...)` condition.
  if (pos_ < s_.size()) {
    const char c = s_[pos_];
    if (!isSpace(c) && c != ';' && c != '{' && c != ')') return error("unexpected " + quoteChar(c));
  }
  return t;
}

Token Lexer::plainWord() {
  Token t;
  t.kind = TokenKind::Word;
  t.line = line_;
  const size_t start = pos_;
  bool variable = false;  // the previous character was '$': "${" does not open a block
  while (pos_ < s_.size()) {
    const char c = s_[pos_];
    if (c == '\\') {
      if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '\n') ++line_;
      pos_ = pos_ + 2 > s_.size() ? s_.size() : pos_ + 2;
      variable = false;
      continue;
    }
    if (c == '{' && variable) {
      ++pos_;
      variable = false;
      continue;
    }
    if (isSpace(c) || c == ';' || c == '{') break;
    variable = c == '$';
    ++pos_;
  }
  t.text = unescapeWord(s_.substr(start, pos_ - start));
  return t;
}

}  // namespace sluice::config::nginx
