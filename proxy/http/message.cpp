// HeaderMap helpers and case-insensitive token utilities.
#include "proxy/http/message.h"

namespace sluice::http {

static inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool listContainsToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trimOws(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void HeaderMap::trimLastValue() {
  Field& f = fields_.back();
  f.id = classifyHeader({buf_.data() + f.nameOff, f.nameLen});
  while (f.valueLen > 0 &&
         (buf_[f.valueOff + f.valueLen - 1] == ' ' || buf_[f.valueOff + f.valueLen - 1] == '\t'))
    --f.valueLen;
}

void HeaderMap::add(std::string_view name, std::string_view value) {
  Field f{uint32_t(buf_.size()), uint32_t(name.size()), 0, uint32_t(value.size()), false,
          classifyHeader(name)};
  buf_.append(name);
  f.valueOff = uint32_t(buf_.size());
  buf_.append(value);
  fields_.push_back(f);
}

std::string_view HeaderMap::get(std::string_view name, bool* found) const {
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (!fields_[i].removed && iequals(nameAt(i), name)) {
      if (found) *found = true;
      return valueAt(i);
    }
  }
  if (found) *found = false;
  return {};
}

std::string_view HeaderMap::get(Hdr id, bool* found) const {
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (fields_[i].id == id && !fields_[i].removed) {
      if (found) *found = true;
      return valueAt(i);
    }
  }
  if (found) *found = false;
  return {};
}

bool HeaderMap::has(Hdr id) const {
  bool found;
  get(id, &found);
  return found;
}

size_t HeaderMap::count(Hdr id) const {
  size_t n = 0;
  for (const Field& f : fields_)
    if (f.id == id && !f.removed) ++n;
  return n;
}

bool HeaderMap::has(std::string_view name) const {
  bool found;
  get(name, &found);
  return found;
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (size_t i = 0; i < fields_.size(); ++i)
    if (!fields_[i].removed && iequals(nameAt(i), name)) ++n;
  return n;
}

void HeaderMap::remove(std::string_view name) {
  for (size_t i = 0; i < fields_.size(); ++i)
    if (iequals(nameAt(i), name)) fields_[i].removed = true;
}

}  // namespace sluice::http
