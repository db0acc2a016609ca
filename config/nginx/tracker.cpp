// Tracker (what became of each directive) and Scope (nginx's inheritance between levels).
#include <algorithm>

#include "config/nginx/converter.h"

namespace sluice::config::nginx {

namespace {

// Blocks whose entries are table rows, not directives.
bool isTableBlock(const std::string& name) {
  return name == "types" || name == "map" || name == "geo" || name == "split_clients" ||
         name == "charset_map" || name == "match";
}

int rank(Fate f) {
  switch (f) {
    case Fate::Unseen:
      return 0;
    case Fate::Converted:
      return 1;
    case Fate::NoEffect:
      return 2;
    case Fate::Differs:
      return 3;
    case Fate::NotConverted:
      return 4;
  }
  return 0;
}

std::string quoted(const Directive& d) {
  return "\"" + d.name + "\"";
}

}  // namespace

void Tracker::walk(const std::vector<Directive>& list, const Directive* parent, bool counted) {
  for (const Directive& d : list) {
    order_[&d] = order_.size();
    parent_[&d] = parent;
    if (counted) counted_.push_back(&d);
    walk(d.children, &d, counted && !isTableBlock(d.name));
  }
}

void Tracker::index(const std::vector<Directive>& list) {
  walk(list, nullptr, true);
}

void Tracker::mark(const Directive& d, Fate f) {
  Fate& cur = fate_[&d];
  if (rank(f) > rank(cur)) cur = f;
}

void Tracker::markTree(const Directive& d, Fate f) {
  mark(d, f);
  for (const Directive& c : d.children) markTree(c, f);
}

void Tracker::add(std::vector<std::pair<size_t, Diag>>& list, const Directive& d, std::string msg) {
  Diag diag{d.at, std::move(msg)};
  if (!seen_.insert(diag.str()).second) return;
  auto it = order_.find(&d);
  list.emplace_back(it == order_.end() ? order_.size() : it->second, std::move(diag));
}

void Tracker::converted(const Directive& d) {
  mark(d, Fate::Converted);
}

void Tracker::differs(const Directive& d, const std::string& how) {
  mark(d, Fate::Differs);
  add(warnings_, d, quoted(d) + ": " + how);
}

void Tracker::outcome(const Directive& d, const std::vector<std::string>& differences) {
  if (differences.empty()) {
    converted(d);
    return;
  }
  std::string all;
  for (const auto& x : differences) all += (all.empty() ? "" : "; ") + x;
  differs(d, all);
}

void Tracker::skip(const Directive& d, const std::string& why) {
  mark(d, Fate::NotConverted);
  add(warnings_, d, quoted(d) + " not converted: " + why);
}

void Tracker::noEffect(const Directive& d, const std::string& why) {
  mark(d, Fate::NoEffect);
  add(notes_, d, quoted(d) + " not converted: " + why);
}

void Tracker::skipBlock(const Directive& d, const std::string& why) {
  size_t inside = 0;
  for (const Directive* c : counted_) {
    if (c == &d) continue;
    for (const Directive* p = c; p != nullptr; p = parentOf(p))
      if (p == &d) {
        ++inside;
        break;
      }
  }
  std::string msg = why;
  if (inside > 0)
    msg += " (with the " + std::to_string(inside) + " directive" + (inside == 1 ? "" : "s") +
           " inside it)";
  skip(d, msg);
  markTree(d, Fate::NotConverted);
}

const Directive* Tracker::parentOf(const Directive* d) const {
  auto it = parent_.find(d);
  return it == parent_.end() ? nullptr : it->second;
}

Fate Tracker::fate(const Directive& d) const {
  auto it = fate_.find(&d);
  return it == fate_.end() ? Fate::Unseen : it->second;
}

void Tracker::finish(ConvertResult& res) {
  for (const Directive* d : counted_) {
    if (fate(*d) == Fate::Unseen)
      skip(*d, "Sluice has no equivalent (the converter does not know this directive here)");
  }
  res.directives = int(counted_.size());
  for (const Directive* d : counted_) {
    const Fate f = fate(*d);
    if (f == Fate::Converted || f == Fate::Differs)
      ++res.converted;
    else
      ++res.notConverted;
  }
  auto sorted = [](std::vector<std::pair<size_t, Diag>>& list) {
    std::stable_sort(list.begin(), list.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Diag> out;
    out.reserve(list.size());
    for (auto& [o, d] : list) out.push_back(std::move(d));
    return out;
  };
  res.warnings = sorted(warnings_);
  res.notes = sorted(notes_);
}

std::vector<const Directive*> Scope::all(std::string_view name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_) {
    auto it = s->at_.find(name);
    if (it != s->at_.end()) return it->second;
  }
  return {};
}

const Directive* Scope::last(std::string_view name) const {
  auto v = all(name);
  return v.empty() ? nullptr : v.back();
}

}  // namespace sluice::config::nginx
