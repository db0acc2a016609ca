// Unit tests for config/nginx/lexer and parser: words, quoting, escapes, comments, "${var}",
// positions, nginx's error wording, include globs, cycles and limits, and truncated or random
// input that must end in an error, never a crash.
#include "config/nginx/parser.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "config/nginx/lexer.h"

using namespace sluice::config::nginx;

namespace {

std::vector<Token> tokens(std::string_view text) {
  Lexer lex(text);
  std::vector<Token> out;
  for (;;) {
    Token t = lex.next();
    const TokenKind k = t.kind;
    out.push_back(std::move(t));
    if (k == TokenKind::End || k == TokenKind::Error) return out;
  }
}

ParseResult parse(std::string_view text) {
  return parseText(text, "t.conf", "");
}

// A scratch folder with files, removed at the end of the test.
struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/sluice-nginx-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~Dir() { (void)std::system(("rm -rf '" + path + "'").c_str()); }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path + "/" + name;
    const size_t slash = p.rfind('/');
    (void)std::system(("mkdir -p '" + p.substr(0, slash) + "'").c_str());
    std::ofstream(p) << text;
    return p;
  }
};

}  // namespace

TEST_CASE("lexer: words, punctuation, quotes and escapes as nginx reads them") {
  auto t = tokens("a b;\n c \"d e\" 'f;g' {\n}");
  REQUIRE(t.size() == 9);
  CHECK(t[0].text == "a");
  CHECK(t[2].kind == TokenKind::Semicolon);
  CHECK(t[3].text == "c");
  CHECK(t[3].line == 2);
  CHECK(t[4].text == "d e");
  CHECK(t[4].quoted);
  CHECK(t[5].text == "f;g");
  CHECK(t[6].kind == TokenKind::BlockStart);
  CHECK(t[7].kind == TokenKind::BlockEnd);
  CHECK(t[7].line == 3);

  // \" \' \\ and \t \r \n are escapes; any other backslash stays (regexes keep "\.").
  t = tokens(R"("a\"b" 'c\'d' "e\\f" "g\th" ~*\.(png)$ a\;b;)");
  CHECK(t[0].text == "a\"b");
  CHECK(t[1].text == "c'd");
  CHECK(t[2].text == "e\\f");
  CHECK(t[3].text == "g\th");
  CHECK(t[4].text == "~*\\.(png)$");
  CHECK(t[5].text == "a\\;b");  // the backslash kept the ';' inside the word
  CHECK(t[6].kind == TokenKind::Semicolon);
}

TEST_CASE("lexer: comments only where a word starts, ${var} does not open a block") {
  auto t = tokens("# a comment ; {\nx#y; # tail\nset $a ${b}c;");
  REQUIRE(t.size() >= 7);
  CHECK(t[0].text == "x#y");
  CHECK(t[0].line == 2);
  CHECK(t[1].kind == TokenKind::Semicolon);
  CHECK(t[2].text == "set");
  CHECK(t[4].text == "${b}c");
  CHECK(t[5].kind == TokenKind::Semicolon);
  // A '}' inside a word is part of it (nginx only ends a block at a word start).
  t = tokens("a}b;");
  CHECK(t[0].text == "a}b");
}

TEST_CASE("lexer: after a closing quote only a separator, ';', '{' or ')' may follow") {
  auto t = tokens("\"a\"b;");
  CHECK(t[0].kind == TokenKind::Error);
  CHECK(t[0].text == "unexpected \"b\"");
  t = tokens("if ($a = \"x\") {");
  CHECK(t[3].text == "x");
  CHECK(t[4].text == ")");
  t = tokens("a \"unterminated\n\n");
  CHECK(t[1].kind == TokenKind::Error);
  CHECK(t[1].text == "unexpected end of file, expecting \";\" or \"}\"");
  CHECK(t[1].line == 3);
}

TEST_CASE("parser: blocks, arguments and positions") {
  auto r =
      parse("http {\n  server {\n    listen 80;\n    location = /x { return 200 'ok'; }\n  }\n}\n");
  REQUIRE(r.errors.empty());
  REQUIRE(r.directives.size() == 1);
  const Directive& http = r.directives[0];
  CHECK(http.block);
  const Directive& server = http.children.at(0);
  CHECK(server.at.line == 2);
  CHECK(server.children.at(0).name == "listen");
  CHECK(server.children.at(0).arg(0) == "80");
  const Directive& loc = server.children.at(1);
  CHECK(loc.at.str() == "t.conf:4");
  REQUIRE(loc.args.size() == 2);
  CHECK(loc.arg(1) == "/x");
  CHECK(loc.children.at(0).args.at(1).quoted);
  // An empty quoted word is a name too (map entries like '' close;).
  r = parse("map $a $b { '' close; default upgrade; }");
  REQUIRE(r.errors.empty());
  CHECK(r.directives[0].children[0].name.empty());
  CHECK(r.directives[0].children[0].arg(0) == "close");
}

TEST_CASE("parser: syntax errors stop with nginx's wording and position") {
  struct Case {
    const char* text;
    const char* message;
    int line;
  };
  const Case cases[] = {
      {"http {\n server {\n", "unexpected end of file, expecting \"}\"", 3},
      {"a;\n}\n", "unexpected \"}\"", 2},
      {"a {\n b\n}", "unexpected \"}\"", 3},
      {";", "unexpected \";\"", 1},
      {"{ a; }", "unexpected \"{\"", 1},
      {"a b", "unexpected end of file, expecting \";\" or \"}\"", 1},
      {"include a b;", "invalid number of arguments in \"include\" directive", 1},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto r = parse(c.text);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].message == c.message);
    CHECK(r.errors[0].at.line == c.line);
    CHECK(r.errors[0].at.file == "t.conf");
    CHECK(r.directives.empty());
  }
}

TEST_CASE("parser: deep nesting and too many directives are errors, not a crash") {
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "a {";
  auto r = parse(deep);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message.find("nested more than 64") != std::string::npos);
  std::string many;
  for (int i = 0; i < 100001; ++i) many += "a;";
  r = parse(many);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message == "more than 100000 directives");
}

TEST_CASE(
    "parser: include globs are relative to the main file's folder, sorted, may match "
    "nothing") {
  Dir d;
  d.write("conf.d/b.conf", "server { listen 82; }\n");
  d.write("conf.d/a.conf", "server { listen 81; }\n");
  d.write("conf.d/skip.txt", "garbage {{{");
  d.write("snippets/proxy.conf", "proxy_set_header Host $host;\n");
  const std::string main = d.write(
      "nginx.conf",
      "http {\n  include conf.d/*.conf;\n  include none/*.conf;\n  server {\n    location / "
      "{ include snippets/proxy.conf; }\n  }\n}\n");
  auto r = parseFile(main);
  REQUIRE(r.errors.empty());
  CHECK(r.files == 4);
  const auto& http = r.directives.at(0).children;
  REQUIRE(http.size() == 3);
  CHECK(http[0].children[0].arg(0) == "81");  // a.conf before b.conf
  CHECK(http[0].at.file == d.path + "/conf.d/a.conf");
  CHECK(http[0].at.line == 1);
  CHECK(http[1].children[0].arg(0) == "82");
  const Directive& inner = http[2].children.at(0).children.at(0);
  CHECK(inner.name == "proxy_set_header");
  CHECK(inner.at.str() == d.path + "/snippets/proxy.conf:1");
}

TEST_CASE("parser: a missing include, an error inside one, cycles and depth") {
  Dir d;
  auto r = parseFile(d.write("a.conf", "http {\n  include missing.conf;\n}\n"));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].at.str() == d.path + "/a.conf:2");
  CHECK(r.errors[0].message ==
        "open() \"" + d.path + "/missing.conf\" failed (2: No such file or directory)");

  d.write("bad.conf", "server {\n  listen 80\n}\n");
  r = parseFile(d.write("b.conf", "http { include bad.conf; }"));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].at.str() == d.path + "/bad.conf:3");
  CHECK(r.errors[0].message == "unexpected \"}\"");

  d.write("loop1.conf", "include loop2.conf;");
  d.write("loop2.conf", "include loop1.conf;");
  r = parseFile(d.write("c.conf", "include loop1.conf;"));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message.find("include cycle") != std::string::npos);
  CHECK(r.errors[0].at.file == d.path + "/loop2.conf");

  Dir selfDir;  // a glob that matches the file itself
  r = parseFile(selfDir.write("self.conf", "include *.conf;"));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message.find("include cycle") != std::string::npos);

  for (int i = 0; i < 20; ++i)
    d.write("chain" + std::to_string(i) + ".conf",
            "include chain" + std::to_string(i + 1) + ".conf;");
  d.write("chain20.conf", "a;");
  r = parseFile(d.path + "/chain0.conf");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message.find("includes nested more than 16 deep") != std::string::npos);
}

TEST_CASE("parser: every truncation of a real file and random bytes end cleanly") {
  const std::string conf = R"(user www-data;
events { worker_connections 512; }
http {
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream api { server 127.0.0.1:9000 weight=2; keepalive 8; }
  server {
    listen 443 ssl;
    server_name "app.example.com" *.example.com;
    location ~* \.(png|jpe?g)$ { expires 30d; }
    location / { proxy_pass http://api/; proxy_set_header Host "$host"; }
  }
}
)";
  REQUIRE(parse(conf).errors.empty());
  for (size_t n = 0; n < conf.size(); ++n) {
    auto r = parse(std::string_view(conf).substr(0, n));
    // A prefix is either complete (ends after a directive or block) or an error at a line.
    if (!r.errors.empty()) CHECK(r.errors[0].at.line >= 1);
  }
  std::mt19937 rng(13);
  const std::string alphabet = "ab ;{}\"'\\#$\n\t~*^=/";
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    const int len = int(rng() % 64);
    for (int k = 0; k < len; ++k) s.push_back(alphabet[rng() % alphabet.size()]);
    (void)parse(s);
  }
}
