#include "arena.h"

#include <new>
#include <string>

namespace edgellm {
namespace {

bool is_power_of_two(std::size_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::byte* allocate_block(std::size_t capacity, std::size_t alignment) {
  if (!is_power_of_two(alignment)) {
    throw std::invalid_argument("arena: base_alignment must be a power of two, got " + std::to_string(alignment));
  }
  // operator new(0) returns a unique pointer; allocate at least one byte so the block has an address.
  return static_cast<std::byte*>(::operator new(capacity == 0 ? 1 : capacity, std::align_val_t(alignment)));
}

}  // namespace

Arena::Arena(std::size_t capacity_bytes, std::size_t base_alignment)
    : block_(allocate_block(capacity_bytes, base_alignment), AlignedDelete{base_alignment}),
      capacity_(capacity_bytes),
      base_alignment_(base_alignment) {}

std::size_t Arena::next_offset(std::size_t bytes, std::size_t alignment) const {
  if (!is_power_of_two(alignment)) {
    throw std::invalid_argument("arena: alignment must be a power of two, got " + std::to_string(alignment));
  }
  // Align the absolute address, so alignments larger than the block's base alignment also hold.
  const auto base = reinterpret_cast<std::uintptr_t>(block_.get());
  const std::uintptr_t current = base + used_;
  const std::uintptr_t aligned = (current + (alignment - 1)) & ~static_cast<std::uintptr_t>(alignment - 1);
  if (aligned < current) throw ArenaExhausted("arena: alignment " + std::to_string(alignment) + " overflows");
  const std::size_t offset = aligned - base;
  if (offset > capacity_ || bytes > capacity_ - offset) {
    throw ArenaExhausted("arena exhausted: requested " + std::to_string(bytes) + " bytes with alignment " +
                         std::to_string(alignment) + ", but only " +
                         std::to_string(offset > capacity_ ? 0 : capacity_ - offset) +
                         " bytes are left after alignment (capacity " + std::to_string(capacity_) + ", used " +
                         std::to_string(used_) + ")");
  }
  return offset;
}

void* Arena::allocate(std::size_t bytes, std::size_t alignment) {
  const std::size_t offset = next_offset(bytes, alignment);  // throws without changing anything
  if (bytes == 0) return block_.get() + offset;
  used_ = offset + bytes;
  if (used_ > high_water_) high_water_ = used_;
  return block_.get() + offset;
}

}  // namespace edgellm
