// Unicode helpers for the tokenizer: strict UTF-8 decoding and the character classes (\p{L}, \p{N}, \s) that
// the pre-tokenizer regexes use. The class data is generated (unicode_table.h, tools/gen_unicode_table.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "unicode_table.h"

namespace edgellm::unicode {

// Class of code point cp: ASCII through a small table, the rest by binary search over kClassRanges.
CharClass char_class(std::uint32_t cp);

// Decodes UTF-8 into code points; offsets[i] is the byte offset of code point i, and offsets gets one extra
// entry (size) at the end. Returns the byte offset of the first invalid sequence (overlong forms, surrogates,
// values above U+10FFFF, truncated or stray continuation bytes are all invalid), or SIZE_MAX when all is valid.
std::size_t decode_utf8(const char* data, std::size_t size, std::vector<std::uint32_t>& cps,
                        std::vector<std::size_t>& offsets);

// Appends the UTF-8 encoding of a valid code point.
void append_utf8(std::string& out, std::uint32_t cp);

}  // namespace edgellm::unicode
