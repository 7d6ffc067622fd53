#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings/bindings.h"
#include "tokenizer.h"

namespace edgellm::bindings {

void bind_tokenizer(py::module_& m) {
  // std::out_of_range (decode of a bad id) -> IndexError is pybind11's default; keep it, the message names the id.
  py::class_<tok::BpeTokenizer>(m, "BpeTokenizer")
      .def(py::init([](const std::vector<py::bytes>& tokens, const std::vector<std::int32_t>& token_types,
                       const std::vector<py::bytes>& merges, const std::string& pre, std::int32_t bos_id,
                       std::int32_t eos_id, bool ignore_merges) {
             tok::TokenizerConfig cfg;
             cfg.tokens.reserve(tokens.size());
             for (const py::bytes& t : tokens) cfg.tokens.emplace_back(t);
             cfg.merges.reserve(merges.size());
             for (const py::bytes& t : merges) cfg.merges.emplace_back(t);
             cfg.token_types = token_types;
             cfg.pre = pre;
             cfg.bos_id = bos_id;
             cfg.eos_id = eos_id;
             cfg.ignore_merges = ignore_merges;
             py::gil_scoped_release release;
             return new tok::BpeTokenizer(std::move(cfg));
           }),
           py::arg("tokens"), py::arg("token_types"), py::arg("merges"), py::arg("pre"), py::arg("bos_id"),
           py::arg("eos_id"), py::arg("ignore_merges"))
      .def(
          "encode",
          [](const tok::BpeTokenizer& t, const py::bytes& text, bool add_bos, bool parse_special) {
            std::string s(text);
            std::vector<std::int32_t> ids;
            {
              py::gil_scoped_release release;
              ids = t.encode(s, add_bos, parse_special);
            }
            py::array_t<std::int32_t> out(static_cast<py::ssize_t>(ids.size()));
            std::copy(ids.begin(), ids.end(), out.mutable_data());
            return out;
          },
          py::arg("text"), py::arg("add_bos"), py::arg("parse_special"))
      .def(
          "decode",
          [](const tok::BpeTokenizer& t, const py::array_t<std::int32_t, py::array::c_style>& ids) {
            require_ndim(ids, "ids", 1);
            std::string s;
            {
              const std::int32_t* data = ids.data();
              const auto n = static_cast<std::size_t>(ids.shape(0));
              py::gil_scoped_release release;
              s = t.decode(data, n);
            }
            return py::bytes(s);
          },
          py::arg("ids"))
      .def("pre_tokenize",
           [](const tok::BpeTokenizer& t, const py::bytes& text) {
             std::vector<py::bytes> out;
             for (const std::string& p : t.pre_tokenize(std::string(text))) out.emplace_back(p);
             return out;
           })
      .def("token_type", [](const tok::BpeTokenizer& t, std::int32_t id) { return static_cast<int>(t.token_type(id)); })
      .def("token_id", [](const tok::BpeTokenizer& t, const py::bytes& b) { return t.token_id(std::string(b)); })
      .def_property_readonly("vocab_size", &tok::BpeTokenizer::vocab_size)
      .def_property_readonly("bos_id", &tok::BpeTokenizer::bos_id)
      .def_property_readonly("eos_id", &tok::BpeTokenizer::eos_id);
  m.def("supported_pre_tokenizers", []() { return tok::supported_pre_tokenizers(); });
}

}  // namespace edgellm::bindings
