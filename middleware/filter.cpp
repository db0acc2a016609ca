#include "middleware/filter.h"

#include <algorithm>
#include <cstdint>

namespace sluice::middleware {

namespace {
bool keyIs(const std::string& key, std::string_view ns, std::string_view name) {
  return key.size() == ns.size() + 1 + name.size() && key.compare(0, ns.size(), ns) == 0 &&
         key[ns.size()] == '\0' && key.compare(ns.size() + 1, name.size(), name) == 0;
}
}  // namespace

Attributes::Slot* Attributes::find(std::string_view ns, std::string_view name) {
  for (size_t i = 0; i < used_; ++i)
    if (keyIs(slots_[i].key, ns, name)) return &slots_[i];
  return nullptr;
}

void Attributes::set(std::string_view ns, std::string_view name, std::string_view value) {
  Slot* s = find(ns, name);
  if (s == nullptr) {
    if (used_ == slots_.size()) slots_.emplace_back();
    s = &slots_[used_++];
    s->key.assign(ns);
    s->key.push_back('\0');
    s->key.append(name);
  }
  s->value.assign(value);
}

const std::string* Attributes::get(std::string_view ns, std::string_view name) const {
  for (size_t i = 0; i < used_; ++i)
    if (keyIs(slots_[i].key, ns, name)) return &slots_[i].value;
  return nullptr;
}

bool Attributes::has(std::string_view ns) const {
  for (size_t i = 0; i < used_; ++i) {
    const std::string& k = slots_[i].key;
    if (k.size() > ns.size() && k.compare(0, ns.size(), ns) == 0 && k[ns.size()] == '\0')
      return true;
  }
  return false;
}

namespace {
// The first offset at or after `from` whose address in `mem` is aligned to `align`: a chunk
// itself is only aligned for max_align_t, so over-aligned types are aligned by address.
size_t alignedOffset(const std::byte* mem, size_t from, size_t align) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(mem) + from;
  return from + (((p + align - 1) & ~uintptr_t(align - 1)) - p);
}
}  // namespace

void* FilterArena::allocate(size_t size, size_t align) {
  total_ += size + align;
  if (!chunks_.empty()) {
    Chunk& c = chunks_.back();
    size_t off = alignedOffset(c.mem.get(), used_, align);
    if (off + size <= c.size) {
      used_ = off + size;
      return c.mem.get() + off;
    }
  }
  Chunk c;
  c.size = std::max<size_t>(256, size + align);
  c.mem.reset(new std::byte[c.size]);
  const size_t off = alignedOffset(c.mem.get(), 0, align);
  used_ = off + size;
  chunks_.push_back(std::move(c));
  return chunks_.back().mem.get() + off;
}

void FilterArena::reset() {
  if (chunks_.size() > 1) {  // grow into one chunk big enough for what the last request used
    Chunk c;
    c.size = std::max(total_, capacity());
    c.mem.reset(new std::byte[c.size]);
    chunks_.clear();
    chunks_.push_back(std::move(c));
  }
  used_ = 0;
  total_ = 0;
}

size_t FilterArena::capacity() const {
  size_t n = 0;
  for (const Chunk& c : chunks_) n += c.size;
  return n;
}

}  // namespace sluice::middleware
