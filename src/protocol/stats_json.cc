// The JSON reader of stats_json.h: a recursive descent over the text that
// checks every value and records the top-level members' extents. Nesting is
// bounded (kMaxJsonDepth), so a hostile answer cannot exhaust the stack.
#include "protocol/stats_json.h"

#include "protocol/fields.h"

namespace netsem::protocol {

namespace {

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool at_end() const { return pos_ == text_.size(); }
  std::size_t pos() const { return pos_; }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  // Skips one value, reporting its type; false when it is not valid JSON.
  bool value(JsonType& type, int depth) {
    if (depth > kMaxJsonDepth) return false;
    switch (peek()) {
      case '{':
        type = JsonType::kObject;
        return container('}', depth, nullptr);
      case '[':
        type = JsonType::kArray;
        return container(']', depth, nullptr);
      case '"':
        type = JsonType::kString;
        return string(nullptr);
      case 't':
        type = JsonType::kBool;
        return word("true");
      case 'f':
        type = JsonType::kBool;
        return word("false");
      case 'n':
        type = JsonType::kNull;
        return word("null");
      default:
        type = JsonType::kNumber;
        return number();
    }
  }

  // An object ('}') or array (']') starting at the current '{' or '['; the
  // top-level object's members go to `fields` when it is given.
  bool container(char close, int depth, std::vector<StatsField>* fields) {
    ++pos_;
    skip_space();
    if (peek() == close) {
      ++pos_;
      return true;
    }
    for (;;) {
      std::string name;
      if (close == '}') {
        if (!string(fields != nullptr ? &name : nullptr)) return false;
        skip_space();
        if (peek() != ':') return false;
        ++pos_;
        skip_space();
      }
      const std::size_t start = pos_;
      JsonType type = JsonType::kNull;
      if (!value(type, depth + 1)) return false;
      if (fields != nullptr) fields->push_back({std::move(name), type, text_.substr(start, pos_ - start)});
      skip_space();
      if (peek() == close) {
        ++pos_;
        return true;
      }
      if (peek() != ',') return false;
      ++pos_;
      skip_space();
    }
  }

  // A string literal; unescaped into `out` when given.
  bool string(std::string* out) {
    const std::size_t start = pos_;
    if (peek() != '"') return false;
    ++pos_;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\') ++pos_;  // the escaped byte is checked by decode
      ++pos_;
    }
    if (pos_ >= text_.size()) return false;
    ++pos_;
    std::string scratch;
    return decode_json_string(text_.substr(start, pos_ - start), out != nullptr ? *out : scratch);
  }

 private:
  bool word(std::string_view w) {
    if (text_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  bool digits() {
    if (!digit(peek())) return false;
    while (digit(peek())) ++pos_;
    return true;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number() {
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (!digits()) {
      return false;
    }
    if (peek() == '.') {
      ++pos_;
      if (!digits()) return false;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digits()) return false;
    }
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool read_hex4(std::string_view text, std::size_t at, std::uint32_t& out) {
  if (at + 4 > text.size()) return false;
  out = 0;
  for (std::size_t i = at; i < at + 4; ++i) {
    const int v = hex_value(text[i]);
    if (v < 0) return false;
    out = out * 16 + static_cast<std::uint32_t>(v);
  }
  return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

}  // namespace

bool decode_json_string(std::string_view literal, std::string& out) {
  out.clear();
  if (literal.size() < 2 || literal.front() != '"' || literal.back() != '"') return false;
  const std::string_view body = literal.substr(1, literal.size() - 2);
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (static_cast<unsigned char>(c) < 0x20 || c == '"') return false;
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= body.size()) return false;
    switch (body[i]) {
      case '"':
      case '\\':
      case '/':
        out.push_back(body[i]);
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        std::uint32_t cp = 0;
        if (!read_hex4(body, i + 1, cp)) return false;
        i += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff) return false;  // a low surrogate first
        if (cp >= 0xd800 && cp <= 0xdbff) {
          std::uint32_t low = 0;
          if (i + 2 >= body.size() || body[i + 1] != '\\' || body[i + 2] != 'u' || !read_hex4(body, i + 3, low) ||
              low < 0xdc00 || low > 0xdfff) {
            return false;
          }
          i += 6;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        }
        append_utf8(out, cp);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

bool parse_stats(std::string_view json, std::vector<StatsField>& fields) {
  fields.clear();
  Reader reader(json);
  reader.skip_space();
  if (reader.peek() != '{' || !reader.container('}', 1, &fields)) return false;
  reader.skip_space();
  return reader.at_end();
}

const StatsField* find_stats_field(const std::vector<StatsField>& fields, std::string_view name) {
  for (const StatsField& field : fields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

bool stats_integer(const std::vector<StatsField>& fields, std::string_view name, std::int64_t& out) {
  const StatsField* field = find_stats_field(fields, name);
  if (field == nullptr || field->type != JsonType::kNumber) return false;
  return parse_int(field->value, INT64_MIN, INT64_MAX, out);
}

bool stats_string(const std::vector<StatsField>& fields, std::string_view name, std::string& out) {
  const StatsField* field = find_stats_field(fields, name);
  if (field == nullptr || field->type != JsonType::kString) return false;
  return decode_json_string(field->value, out);
}

}  // namespace netsem::protocol
