// Arena (bump) allocator over one owned, aligned block.
//
// allocate(bytes, alignment) returns the next address >= the current offset that is a multiple of `alignment`
// (a power of two, checked), and advances the offset past the allocation. reset() makes the whole block
// available again (earlier pointers stay valid memory but their contents will be reused). The high-water mark
// is the largest offset ever reached (across resets), for sizing the arena.
//
// Errors: a non-power-of-two alignment throws std::invalid_argument; an allocation that does not fit throws
// ArenaExhausted (a std::runtime_error) saying how much was requested and how much is left. In both cases the
// arena is unchanged (the offset is computed and checked before it is committed), so the caller can recover.
// Zero-byte allocations are allowed: they return an aligned address and do not move the offset.
//
// The block is owned (RAII; freed by the destructor); the arena is move-only. Not thread-safe: one arena per
// thread (there is no global arena).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>

namespace edgellm {

class ArenaExhausted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Arena {
 public:
  // capacity_bytes: size of the block (may be 0); base_alignment: alignment of the block start (power of two).
  explicit Arena(std::size_t capacity_bytes, std::size_t base_alignment = 64);
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* allocate(std::size_t bytes, std::size_t alignment);
  // Offset from the block start of the next allocate(bytes, alignment), or throws as allocate would; does not
  // change the arena.
  std::size_t next_offset(std::size_t bytes, std::size_t alignment) const;
  void reset() noexcept { used_ = 0; }

  std::size_t used_bytes() const noexcept { return used_; }
  std::size_t capacity_bytes() const noexcept { return capacity_; }
  std::size_t high_water_bytes() const noexcept { return high_water_; }
  std::size_t base_alignment() const noexcept { return base_alignment_; }
  std::byte* data() noexcept { return block_.get(); }
  const std::byte* data() const noexcept { return block_.get(); }

 private:
  struct AlignedDelete {
    std::size_t alignment;
    void operator()(std::byte* p) const noexcept { ::operator delete(p, std::align_val_t(alignment)); }
  };
  std::unique_ptr<std::byte, AlignedDelete> block_;
  std::size_t capacity_;
  std::size_t base_alignment_;
  std::size_t used_ = 0;
  std::size_t high_water_ = 0;
};

}  // namespace edgellm
