#include "unicode.h"

#include <algorithm>
#include <cstdint>

namespace edgellm::unicode {

CharClass char_class(std::uint32_t cp) {
  if (cp < 0x80) {  // the common case, without the search
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kWhitespace;
    return kOther;
  }
  // First range past cp, then step back: the candidate range with first <= cp.
  const ClassRange* begin = kClassRanges;
  const ClassRange* end = kClassRanges + kClassRangeCount;
  const ClassRange* it =
      std::upper_bound(begin, end, cp, [](std::uint32_t v, const ClassRange& r) { return v < r.first; });
  if (it == begin) return kOther;
  --it;
  return cp <= it->last ? it->cls : kOther;
}

std::size_t decode_utf8(const char* data, std::size_t size, std::vector<std::uint32_t>& cps,
                        std::vector<std::size_t>& offsets) {
  cps.clear();
  offsets.clear();
  cps.reserve(size);
  offsets.reserve(size + 1);
  const auto* s = reinterpret_cast<const unsigned char*>(data);
  std::size_t i = 0;
  while (i < size) {
    const unsigned char c = s[i];
    std::uint32_t cp;
    std::size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      cp = c & 0x1F;
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      cp = c & 0x0F;
      len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      cp = c & 0x07;
      len = 4;
    } else {
      return i;  // continuation byte without a lead, 0xC0/0xC1 (overlong), or > 0xF4
    }
    if (i + len > size) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;  // overlong, out of range, or a UTF-16 surrogate
    }
    cps.push_back(cp);
    offsets.push_back(i);
    i += len;
  }
  offsets.push_back(size);
  return SIZE_MAX;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace edgellm::unicode
