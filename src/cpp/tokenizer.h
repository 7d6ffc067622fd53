// Byte-level BPE tokenizer (GPT-2 / SmolLM / Qwen2 / Llama-3 family), built from the vocabulary that a GGUF file
// stores under tokenizer.ggml.* (the caller reads the file; see edgellm_ext/tokenizer.py).
//
// encode(text):
//   1. Special-token split: the text is cut at occurrences of added tokens, leftmost-longest. USER_DEFINED tokens
//      (GGUF token type 4) are always recognised; CONTROL tokens (type 3, e.g. <|im_start|>) only when
//      parse_special is true (otherwise they are ordinary text and get BPE-encoded like any other characters).
//      This is llama.cpp's parse_special behaviour; Hugging Face `tokenizers` gives the same with its special
//      added tokens and encode_special_tokens = !parse_special.
//   2. Pre-tokenization of each remaining fragment with the regex chosen by tokenizer.ggml.pre, implemented as
//      hand-written matchers over Unicode code points (classes \p{L}, \p{N}, \s from unicode_table.h):
//        gpt2, default : 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//        smollm (and starcoder, refact, codeshell, command-r, exaone, minerva):
//                        first split isolating every \p{N} code point, then the gpt2 regex on each piece
//        llama3, llama-bpe, dbrx, smaug-bpe :
//                        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//                        | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//        qwen2, stablelm2, deepseek-r1-qwen : as llama3 but \p{N} (single digits)
//      (?i:...) folds ASCII case and U+017F (long s -> s), as Oniguruma does for the Hugging Face tokenizer;
//      llama.cpp's splitter does not fold U+017F, so "'ſ" pre-tokenizes differently there.
//      ("default" here means the GPT-2 regex, which is what Hugging Face's ByteLevel pre-tokenizer uses; llama.cpp's
//      own fallback for an unrecognised name is a different, DeepSeek-like set of regexes that we do not copy.)
//   3. BPE on the UTF-8 bytes of each piece: start from one token per byte, repeatedly merge the adjacent pair
//      with the lowest merge rank (ties: leftmost), as Hugging Face's BPE model does. With ignore_merges (Llama-3)
//      a piece that is itself in the vocabulary is emitted whole first.
// decode(ids): concatenation of each token's bytes (byte-level tokens mapped back through the GPT-2
// byte<->unicode table, CONTROL/USER_DEFINED tokens as their literal text, <0xHH> BYTE tokens as that byte).
// The result may be invalid UTF-8 when ids end inside a multi-byte character; the caller decides (Python:
// errors="strict" raises, errors="replace" substitutes U+FFFD).
//
// Limits: the input text must be valid UTF-8 (std::invalid_argument otherwise); ids are int32 in [0, vocab_size).
// Construction validates the vocabulary (std::invalid_argument naming the first problem). The object is
// immutable after construction; encode/decode are const and may run concurrently from several threads.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace edgellm::tok {

// GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : std::int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

enum class PreTokenizer { Gpt2, SmolLM, Llama3, Qwen2 };

// Names accepted for tokenizer.ggml.pre, comma-separated (for error messages and docs).
std::string supported_pre_tokenizers();
// Throws std::invalid_argument naming `name` and listing the supported ones when it is unknown.
PreTokenizer parse_pre_tokenizer(const std::string& name);

struct TokenizerConfig {
  std::vector<std::string> tokens;       // tokenizer.ggml.tokens, as stored (byte-level unicode form for BPE)
  std::vector<std::int32_t> token_types; // tokenizer.ggml.token_type (empty: all Normal)
  std::vector<std::string> merges;       // tokenizer.ggml.merges, "left right", rank = index
  std::string pre = "default";           // tokenizer.ggml.pre
  std::int32_t bos_id = -1;              // -1: none
  std::int32_t eos_id = -1;              // -1: none
  bool ignore_merges = false;            // emit a pre-token found whole in the vocabulary before merging
                                         // (always on for the llama3 pre-tokenizer, as in llama.cpp)
};

class BpeTokenizer {
 public:
  explicit BpeTokenizer(TokenizerConfig config);

  // Token ids for UTF-8 `text`; prepends bos_id when add_bos (std::invalid_argument if there is none).
  std::vector<std::int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const;
  // Bytes of the tokens, concatenated. Throws std::out_of_range naming the first id not in [0, vocab_size).
  std::string decode(const std::vector<std::int32_t>& ids) const;
  // Same for a raw array.
  std::string decode(const std::int32_t* ids, std::size_t n) const;

  // Pre-tokenizer pieces of one fragment (no special-token handling); for tests.
  std::vector<std::string> pre_tokenize(const std::string& text) const;

  std::size_t vocab_size() const { return token_bytes_.size(); }
  std::int32_t bos_id() const { return bos_id_; }
  std::int32_t eos_id() const { return eos_id_; }
  PreTokenizer pre_tokenizer() const { return pre_; }
  TokenType token_type(std::int32_t id) const;
  // Token id of a byte string, or -1.
  std::int32_t token_id(const std::string& token_bytes) const;

 private:
  struct MergeResult {
    std::int32_t rank;
    std::int32_t merged_id;
  };
  struct SpecialToken {
    std::string text;
    std::int32_t id;
    bool control;  // recognised only with parse_special
  };

  void encode_fragment(const char* data, std::size_t size, std::vector<std::int32_t>& out) const;
  void bpe_piece(const char* data, std::size_t size, std::vector<std::int32_t>& out) const;
  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  std::vector<std::string> token_bytes_;  // decoded bytes of each token
  std::vector<TokenType> token_types_;
  std::unordered_map<std::string, std::int32_t> bytes_to_id_;
  std::unordered_map<std::uint64_t, MergeResult> merges_;
  std::int32_t byte_token_[256];  // token id of each single byte
  std::vector<SpecialToken> specials_;  // sorted longest first
  std::vector<std::int32_t> specials_by_first_byte_[256];  // indices into specials_, longest first
  PreTokenizer pre_;
  std::int32_t bos_id_;
  std::int32_t eos_id_;
  bool ignore_merges_;
};

}  // namespace edgellm::tok
