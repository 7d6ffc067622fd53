#include "tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <queue>
#include <stdexcept>
#include <utility>

#include "unicode.h"

namespace edgellm::tok {

using unicode::CharClass;
using unicode::kLetter;
using unicode::kNumber;
using unicode::kOther;
using unicode::kWhitespace;

namespace {

struct PreName {
  const char* name;
  PreTokenizer kind;
};

// GGUF tokenizer.ggml.pre names (llama.cpp's convert_hf_to_gguf.py) grouped by the regexes llama.cpp uses.
constexpr PreName kPreNames[] = {
    {"default", PreTokenizer::Gpt2},      {"gpt2", PreTokenizer::Gpt2},
    {"gpt-2", PreTokenizer::Gpt2},        {"smollm", PreTokenizer::SmolLM},
    {"starcoder", PreTokenizer::SmolLM},  {"refact", PreTokenizer::SmolLM},
    {"codeshell", PreTokenizer::SmolLM},  {"command-r", PreTokenizer::SmolLM},
    {"exaone", PreTokenizer::SmolLM},     {"minerva-7b", PreTokenizer::SmolLM},
    {"llama3", PreTokenizer::Llama3},     {"llama-v3", PreTokenizer::Llama3},
    {"llama-bpe", PreTokenizer::Llama3},  {"dbrx", PreTokenizer::Llama3},
    {"smaug-bpe", PreTokenizer::Llama3},  {"qwen2", PreTokenizer::Qwen2},
    {"stablelm2", PreTokenizer::Qwen2},   {"deepseek-r1-qwen", PreTokenizer::Qwen2},
};

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the other 68 to U+0100.. in byte order.
struct ByteLevelMap {
  std::uint32_t byte_to_cp[256];
  ByteLevelMap() {
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_to_cp[b] = printable ? b : next++;
    }
  }
  // Inverse: code point -> byte, or -1.
  int cp_to_byte(std::uint32_t cp) const {
    if (cp < 256 && byte_to_cp[cp] == cp) return static_cast<int>(cp);
    if (cp >= 256 && cp < 256 + 68) {
      for (int b = 0; b < 256; ++b) {
        if (byte_to_cp[b] == cp) return b;
      }
    }
    return -1;
  }
};

// Decodes a byte-level token string ("Ġthe") to its bytes (" the"). Returns false if a code point is not in the
// byte-level alphabet or the string is not valid UTF-8.
bool byte_level_decode(const ByteLevelMap& map, const std::string& token, std::string& out) {
  std::vector<std::uint32_t> cps;
  std::vector<std::size_t> offsets;
  if (unicode::decode_utf8(token.data(), token.size(), cps, offsets) != SIZE_MAX) return false;
  out.clear();
  for (std::uint32_t cp : cps) {
    const int b = map.cp_to_byte(cp);
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
  }
  return true;
}

// "<0x0A>" -> 0x0A, else -1.
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

// ------------------------------------------------------------------------------------- pre-tokenizer matchers
// Each matcher walks code points [begin, end) of one fragment and appends the end index of every piece to
// `ends`. They implement the regexes in tokenizer.h with leftmost-first alternation (what a backtracking regex
// engine does): at each position the alternatives are tried in the order written, and every code point matches
// at least one alternative, so pieces tile the fragment. A position at or past `end` behaves as "no character"
// (lookaheads and optional next characters see the end of the fragment, as they do in a per-piece regex).
struct Text {
  const std::uint32_t* cps;
  const CharClass* cls;
  std::size_t end;
  std::uint32_t cp(std::size_t i) const { return i < end ? cps[i] : 0xFFFFFFFFu; }
  bool has(std::size_t i) const { return i < end; }
  bool letter(std::size_t i) const { return i < end && cls[i] == kLetter; }
  bool number(std::size_t i) const { return i < end && cls[i] == kNumber; }
  bool space(std::size_t i) const { return i < end && cls[i] == kWhitespace; }
  // [^\s\p{L}\p{N}]: a character that is none of the three (unassigned code points included).
  bool other(std::size_t i) const { return i < end && cls[i] == kOther; }
};

// Case folding for (?i:'s|'t|'re|'ve|'m|'ll|'d): ASCII, plus U+017F LATIN SMALL LETTER LONG S, whose simple case
// folding is 's' (Oniguruma, behind Hugging Face's Split regex, matches "'ſ" as a contraction; llama.cpp's
// hand-written splitter does not: we follow the Hugging Face tokenizer the model was trained with). No other
// code point simple-case-folds to one of s, t, r, e, v, m, l, d.
std::uint32_t ascii_lower(std::uint32_t c) {
  if (c == 0x17F) return 's';
  return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

// 's|'t|'re|'ve|'m|'ll|'d (case-insensitive for Llama-3/Qwen2): length of the match at pos, or 0.
std::size_t match_contraction(const Text& t, std::size_t pos, bool ignore_case) {
  if (t.cp(pos) != '\'' || !t.has(pos + 1)) return 0;
  auto low = [&](std::size_t i) { return ignore_case ? ascii_lower(t.cp(i)) : t.cp(i); };
  const std::uint32_t a = low(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (!t.has(pos + 2)) return 0;
  const std::uint32_t b = low(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Number of whitespace code points starting at pos.
std::size_t whitespace_run(const Text& t, std::size_t pos) {
  std::size_t n = 0;
  while (t.space(pos + n)) ++n;
  return n;
}

// \s+(?!\S)|\s+ at pos (pos is whitespace): a run that ends the fragment is taken whole; a run followed by a
// non-space gives back its last character (so that " word" can take it), unless it is only one long.
std::size_t match_whitespace(const Text& t, std::size_t pos) {
  const std::size_t n = whitespace_run(t, pos);
  if (n > 1 && t.has(pos + n)) return n - 1;
  return n;
}

void split_gpt2(const Text& t, std::size_t begin, std::vector<std::size_t>& ends) {
  std::size_t pos = begin;
  while (pos < t.end) {
    std::size_t len = match_contraction(t, pos, false);
    if (len == 0) {
      const std::size_t lead = t.cp(pos) == ' ' ? 1 : 0;  // the optional literal space of " ?X+"
      const std::size_t q = pos + lead;
      if (t.letter(q)) {  // ?\p{L}+
        std::size_t e = q;
        while (t.letter(e)) ++e;
        len = e - pos;
      } else if (t.number(q)) {  // ?\p{N}+
        std::size_t e = q;
        while (t.number(e)) ++e;
        len = e - pos;
      } else if (t.other(q)) {  // ?[^\s\p{L}\p{N}]+
        std::size_t e = q;
        while (t.other(e)) ++e;
        len = e - pos;
      } else {  // \s+(?!\S)|\s+ (pos must be whitespace here: every other class was handled above)
        len = match_whitespace(t, pos);
      }
    }
    pos += len;
    ends.push_back(pos);
  }
}

// Llama-3 (max_digits 3) and Qwen2 (max_digits 1).
void split_llama3(const Text& t, std::size_t begin, std::size_t max_digits, std::vector<std::size_t>& ends) {
  std::size_t pos = begin;
  while (pos < t.end) {
    std::size_t len = match_contraction(t, pos, true);
    const std::uint32_t c = t.cp(pos);
    if (len == 0 && !(c == '\r' || c == '\n' || t.number(pos)) && (t.letter(pos) || t.letter(pos + 1))) {
      // [^\r\n\p{L}\p{N}]?\p{L}+ : an optional non-letter lead (not CR/LF/digit) then letters
      std::size_t e = pos + 1;
      while (t.letter(e)) ++e;
      len = e - pos;
    }
    if (len == 0 && t.number(pos)) {  // \p{N}{1,max_digits}
      std::size_t e = pos;
      while (t.number(e) && e - pos < max_digits) ++e;
      len = e - pos;
    }
    if (len == 0) {
      const std::size_t q = pos + (c == ' ' ? 1 : 0);
      if (t.other(q)) {  // ?[^\s\p{L}\p{N}]+[\r\n]*
        std::size_t e = q;
        while (t.other(e)) ++e;
        while (t.cp(e) == '\r' || t.cp(e) == '\n') ++e;
        len = e - pos;
      }
    }
    if (len == 0) {
      // \s*[\r\n]+ : up to the last CR/LF inside the whitespace run
      const std::size_t n = whitespace_run(t, pos);
      std::size_t last_crlf_end = 0;
      for (std::size_t k = 0; k < n; ++k) {
        if (t.cp(pos + k) == '\r' || t.cp(pos + k) == '\n') last_crlf_end = k + 1;
      }
      len = last_crlf_end > 0 ? last_crlf_end : match_whitespace(t, pos);
    }
    pos += len;
    ends.push_back(pos);
  }
}

}  // namespace

std::string supported_pre_tokenizers() {
  std::string s;
  for (const PreName& p : kPreNames) {
    if (!s.empty()) s += ", ";
    s += p.name;
  }
  return s;
}

PreTokenizer parse_pre_tokenizer(const std::string& name) {
  for (const PreName& p : kPreNames) {
    if (name == p.name) return p.kind;
  }
  throw std::invalid_argument("unsupported pre-tokenizer '" + name + "' (tokenizer.ggml.pre); supported: " +
                              supported_pre_tokenizers());
}

BpeTokenizer::BpeTokenizer(TokenizerConfig config)
    : pre_(parse_pre_tokenizer(config.pre)),
      bos_id_(config.bos_id),
      eos_id_(config.eos_id),
      ignore_merges_(config.ignore_merges || pre_ == PreTokenizer::Llama3) {
  const std::size_t n = config.tokens.size();
  if (n == 0) throw std::invalid_argument("tokenizer: the vocabulary (tokenizer.ggml.tokens) is empty");
  if (n > static_cast<std::size_t>(INT32_MAX)) throw std::invalid_argument("tokenizer: vocabulary too large");
  if (!config.token_types.empty() && config.token_types.size() != n) {
    throw std::invalid_argument("tokenizer: " + std::to_string(config.token_types.size()) +
                                " token types for " + std::to_string(n) + " tokens");
  }
  auto check_special_id = [&](std::int32_t id, const char* what) {
    if (id < -1 || id >= static_cast<std::int64_t>(n)) {
      throw std::invalid_argument(std::string("tokenizer: ") + what + " " + std::to_string(id) +
                                  " is outside the vocabulary [0, " + std::to_string(n) + ")");
    }
  };
  check_special_id(bos_id_, "bos_token_id");
  check_special_id(eos_id_, "eos_token_id");

  const ByteLevelMap map;
  token_bytes_.resize(n);
  token_types_.resize(n, TokenType::Normal);
  std::fill(std::begin(byte_token_), std::end(byte_token_), -1);
  bytes_to_id_.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t raw_type = config.token_types.empty() ? 1 : config.token_types[i];
    if (raw_type < 0 || raw_type > 6) {
      throw std::invalid_argument("tokenizer: token " + std::to_string(i) + " has unknown token type " +
                                  std::to_string(raw_type) + " (expected 0..6)");
    }
    const auto type = static_cast<TokenType>(raw_type);
    token_types_[i] = type;
    const std::string& text = config.tokens[i];
    const auto id = static_cast<std::int32_t>(i);
    if (type == TokenType::Normal || type == TokenType::Undefined) {
      if (!byte_level_decode(map, text, token_bytes_[i])) {
        throw std::invalid_argument("tokenizer: token " + std::to_string(i) +
                                    " is not in GPT-2 byte-level form; this is not a byte-level BPE vocabulary");
      }
      // The byte-level map is a bijection, so distinct token strings have distinct bytes; should a vocabulary
      // repeat a string anyway, the first id is kept.
      bytes_to_id_.emplace(token_bytes_[i], id);
      if (token_bytes_[i].size() == 1) {
        auto& slot = byte_token_[static_cast<unsigned char>(token_bytes_[i][0])];
        if (slot < 0) slot = id;
      }
    } else if (type == TokenType::Byte) {
      const int b = parse_byte_token(text);
      if (b < 0) throw std::invalid_argument("tokenizer: BYTE token " + std::to_string(i) + " is not <0xHH>");
      token_bytes_[i] = std::string(1, static_cast<char>(b));
    } else {
      token_bytes_[i] = text;  // control / user-defined / unknown / unused: literal text
      if ((type == TokenType::Control || type == TokenType::UserDefined) && !text.empty()) {
        specials_.push_back({text, id, type == TokenType::Control});
      }
    }
  }
  // Longest first, so that the first special token found at a position is the longest one there.
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const SpecialToken& a, const SpecialToken& b) { return a.text.size() > b.text.size(); });
  for (std::size_t k = 0; k < specials_.size(); ++k) {
    specials_by_first_byte_[static_cast<unsigned char>(specials_[k].text[0])].push_back(static_cast<std::int32_t>(k));
  }

  merges_.reserve(config.merges.size() * 2);
  std::string left, right;
  for (std::size_t r = 0; r < config.merges.size(); ++r) {
    const std::string& m = config.merges[r];
    const std::size_t sp = m.find(' ', 1);  // a byte-level token never contains a raw space
    auto bad = [&](const std::string& why) {
      return std::invalid_argument("tokenizer: merge " + std::to_string(r) + " ('" + m + "') " + why);
    };
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos) {
      throw bad("is not two tokens separated by one space");
    }
    if (!byte_level_decode(map, m.substr(0, sp), left) || !byte_level_decode(map, m.substr(sp + 1), right)) {
      throw bad("is not in byte-level form");
    }
    const auto l = bytes_to_id_.find(left), rr = bytes_to_id_.find(right), mm = bytes_to_id_.find(left + right);
    if (l == bytes_to_id_.end() || rr == bytes_to_id_.end() || mm == bytes_to_id_.end()) {
      throw bad("names a token that is not in the vocabulary");
    }
    // Keep the first (lowest) rank if a pair repeats.
    merges_.emplace(pair_key(l->second, rr->second), MergeResult{static_cast<std::int32_t>(r), mm->second});
  }
}

TokenType BpeTokenizer::token_type(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= token_types_.size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                            std::to_string(token_types_.size()) + ")");
  }
  return token_types_[static_cast<std::size_t>(id)];
}

std::int32_t BpeTokenizer::token_id(const std::string& token_bytes) const {
  const auto it = bytes_to_id_.find(token_bytes);
  return it == bytes_to_id_.end() ? -1 : it->second;
}

void BpeTokenizer::bpe_piece(const char* data, std::size_t size, std::vector<std::int32_t>& out) const {
  if (size == 0) return;
  if (ignore_merges_ || size == 1) {
    const auto it = bytes_to_id_.find(std::string(data, size));
    if (it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    std::int32_t id;
    std::int32_t prev;  // index of the previous live symbol, -1 at the start
    std::int32_t next;  // index of the next live symbol, -1 at the end
    bool alive;
  };
  std::vector<Symbol> sym(size);
  for (std::size_t i = 0; i < size; ++i) {
    const unsigned char b = static_cast<unsigned char>(data[i]);
    if (byte_token_[b] < 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      throw std::invalid_argument(std::string("tokenizer: the vocabulary has no token for byte ") + hex);
    }
    sym[i] = {byte_token_[b], static_cast<std::int32_t>(i) - 1,
              i + 1 < size ? static_cast<std::int32_t>(i + 1) : -1, true};
  }
  // Candidate merges ordered by (rank, position of the left symbol): lowest rank first, then leftmost, as the
  // Hugging Face BPE model orders them. Entries go stale when a neighbour merges; they are checked when popped.
  struct Candidate {
    std::int32_t rank;
    std::int32_t pos;
    std::int32_t merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](std::int32_t left) {
    if (left < 0) return;
    const std::int32_t right = sym[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(sym[left].id, sym[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.merged_id});
  };
  for (std::size_t i = 0; i + 1 < size; ++i) push_pair(static_cast<std::int32_t>(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = sym[c.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.merged_id != c.merged_id) continue;  // stale
    left.id = c.merged_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = c.pos;
    push_pair(left.prev);
    push_pair(c.pos);
  }
  for (std::int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

std::vector<std::string> BpeTokenizer::pre_tokenize(const std::string& text) const {
  std::vector<std::uint32_t> cps;
  std::vector<std::size_t> offsets;
  const std::size_t bad = unicode::decode_utf8(text.data(), text.size(), cps, offsets);
  if (bad != SIZE_MAX) {
    throw std::invalid_argument("tokenizer: text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  }
  std::vector<CharClass> cls(cps.size());
  for (std::size_t i = 0; i < cps.size(); ++i) cls[i] = unicode::char_class(cps[i]);
  std::vector<std::size_t> ends;
  switch (pre_) {
    case PreTokenizer::Gpt2:
      split_gpt2(Text{cps.data(), cls.data(), cps.size()}, 0, ends);
      break;
    case PreTokenizer::SmolLM: {
      // Stage 1 isolates every \p{N} code point; stage 2 runs the GPT-2 regex on the stretches between them.
      std::size_t start = 0;
      for (std::size_t i = 0; i <= cps.size(); ++i) {
        if (i == cps.size() || cls[i] == kNumber) {
          if (i > start) split_gpt2(Text{cps.data(), cls.data(), i}, start, ends);
          if (i < cps.size()) ends.push_back(i + 1);
          start = i + 1;
        }
      }
      break;
    }
    case PreTokenizer::Llama3:
      split_llama3(Text{cps.data(), cls.data(), cps.size()}, 0, 3, ends);
      break;
    case PreTokenizer::Qwen2:
      split_llama3(Text{cps.data(), cls.data(), cps.size()}, 0, 1, ends);
      break;
  }
  std::vector<std::string> pieces;
  pieces.reserve(ends.size());
  std::size_t start = 0;
  for (std::size_t e : ends) {
    pieces.emplace_back(text, offsets[start], offsets[e] - offsets[start]);
    start = e;
  }
  return pieces;
}

void BpeTokenizer::encode_fragment(const char* data, std::size_t size, std::vector<std::int32_t>& out) const {
  if (size == 0) return;
  for (const std::string& piece : pre_tokenize(std::string(data, size))) bpe_piece(piece.data(), piece.size(), out);
}

std::vector<std::int32_t> BpeTokenizer::encode(const std::string& text, bool add_bos, bool parse_special) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) {
    if (bos_id_ < 0) throw std::invalid_argument("tokenizer: add_bos requested but the vocabulary has no BOS token");
    out.push_back(bos_id_);
  }
  // Validate once up front so that an error names a byte offset in the caller's text.
  {
    std::vector<std::uint32_t> cps;
    std::vector<std::size_t> offsets;
    const std::size_t bad = unicode::decode_utf8(text.data(), text.size(), cps, offsets);
    if (bad != SIZE_MAX) {
      throw std::invalid_argument("tokenizer: text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
    }
  }
  // Special-token split, leftmost-longest. Special token texts are valid UTF-8 that begin at a character
  // boundary of a valid string only when matched there, so fragments stay valid UTF-8.
  std::size_t frag_start = 0, pos = 0;
  while (pos < text.size()) {
    const SpecialToken* hit = nullptr;
    for (std::int32_t k : specials_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const SpecialToken& s = specials_[static_cast<std::size_t>(k)];
      if (s.control && !parse_special) continue;
      if (text.compare(pos, s.text.size(), s.text) == 0) {
        hit = &s;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    encode_fragment(text.data() + frag_start, pos - frag_start, out);
    out.push_back(hit->id);
    pos += hit->text.size();
    frag_start = pos;
  }
  encode_fragment(text.data() + frag_start, text.size() - frag_start, out);
  return out;
}

std::string BpeTokenizer::decode(const std::int32_t* ids, std::size_t n) const {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t id = ids[i];
    if (id < 0 || static_cast<std::size_t>(id) >= token_bytes_.size()) {
      throw std::out_of_range("token id " + std::to_string(id) + " at index " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(token_bytes_.size()) + ")");
    }
    out += token_bytes_[static_cast<std::size_t>(id)];
  }
  return out;
}

std::string BpeTokenizer::decode(const std::vector<std::int32_t>& ids) const { return decode(ids.data(), ids.size()); }

}  // namespace edgellm::tok
